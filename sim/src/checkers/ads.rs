//! Ads: every acknowledged ad exists; every version an ad went through is on `ad.changed`
//! exactly once in effect (a duplicate of an event id may be in the log), in order, with the state it had (what the search index and caches
//! downstream are built from); every order pays the price of the ad version it names, an
//! ACTIVE version of someone else's ad; and no conditional read answered 304 for a tag older
//! than a version whose write was acknowledged before the read was sent.

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
    // First occurrences of event ids, in log order: a duplicate of an event id is allowed in
    // the log (at-least-once), consumers drop it.
    let mut published: BTreeMap<&str, Vec<ad::AdChanged>> = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for r in state.ad_events.iter().flatten() {
        match serde_json::from_slice::<ad::AdChanged>(&r.payload) {
            Ok(e) if !ids.insert(e.event_id.clone()) => {}
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
    // An order pays the price of the ad's version it names, which was for sale, and not to
    // the buyer's own ad.
    let by_version: BTreeMap<(&str, i64), &ad::AdChanged> = published
        .iter()
        .flat_map(|(id, events)| events.iter().map(move |e| ((*id, e.version), e)))
        .collect();
    for (order_id, o) in &state.orders {
        let Some(e) = by_version.get(&(o.ad_id.as_str(), o.ad_version)) else {
            out.push(v(format!(
                "order {order_id} names ad {} version {}, which was never published",
                o.ad_id, o.ad_version
            )));
            continue;
        };
        if (e.ad.price_minor, e.ad.currency.as_str()) != (o.amount_minor, o.currency.as_str()) {
            out.push(v(format!(
                "order {order_id} costs {} {} but ad {} cost {} {} at version {}",
                o.amount_minor, o.currency, o.ad_id, e.ad.price_minor, e.ad.currency, o.ad_version
            )));
        }
        if e.ad.status != "ACTIVE" || e.ad.owner_id == o.customer_id {
            out.push(v(format!(
                "order {order_id} bought ad {} at version {} ({}, owner {}) for {}",
                o.ad_id, o.ad_version, e.ad.status, e.ad.owner_id, o.customer_id
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
