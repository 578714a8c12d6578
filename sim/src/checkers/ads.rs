//! Ads: every acknowledged ad exists; every version an ad went through is on `ad.changed`
//! exactly once, in order, with the state it had (what the search index and caches
//! downstream are built from); and no conditional read answered 304 for a tag older than a
//! version whose write was acknowledged before the read was sent.

use std::collections::BTreeMap;

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "ads";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |detail: String| Violation {
        checker: NAME,
        detail,
    };
    for id in &state.acknowledged_ads {
        if !state.ads.contains_key(id) {
            out.push(v(format!("ad {id} was acknowledged but does not exist")));
        }
    }
    let mut published: BTreeMap<&str, Vec<ad::AdChanged>> = BTreeMap::new();
    for r in state.ad_events.iter().flatten() {
        match serde_json::from_slice::<ad::AdChanged>(&r.payload) {
            Ok(e) => published.entry(r.key.as_str()).or_default().push(e),
            Err(e) => out.push(v(format!("an ad.changed record does not decode: {e}"))),
        }
    }
    for (id, (version, ad)) in &state.ads {
        let events = published
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
        let expected: Vec<i64> = (1..=*version).collect();
        if versions != expected {
            out.push(v(format!(
                "ad {id} is at version {version} but ad.changed holds versions {versions:?}"
            )));
        } else if events.last().is_some_and(|e| &e.ad != ad) {
            out.push(v(format!(
                "the last ad.changed event of ad {id} differs from the ad"
            )));
        }
    }
    for (id, tag, acknowledged) in &state.stale_not_modified {
        out.push(v(format!(
            "ad {id}: If-None-Match {tag} was answered 304 after version {acknowledged} was acknowledged"
        )));
    }
    out
}
