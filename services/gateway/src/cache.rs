//! The gateway's response cache for public ad cards (`GET /v1/ads/{id}` without a token).
//!
//! Local to each gateway instance (a card is cheap to fetch again, so nothing must be
//! shared): an entry lives at most [`TTL`] (the `max-age` the card is served with), and is
//! dropped at once when
//! - this gateway changes the ad (PUT, PATCH, DELETE through it), so a client reads its own
//!   writes through the gateway it wrote through;
//! - any gateway's change reaches `ad.changed`, which every instance consumes in a group of
//!   its own ([`invalidate_from_log`]).
//!
//! Orders never read through it: an order's price is the ad's price now.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use contracts::ad::Ad;
use platform::{
    ports::{ConsumerConfig, EventLog},
    Shutdown,
};
use tokio::time::Instant;

/// How long a card may be served from the cache.
pub const TTL: Duration = Duration::from_secs(10);
/// Bound on cached cards; past it the oldest are dropped.
pub const ENTRIES_MAX: usize = 10_000;

/// Cached ad cards, and how often they served.
#[derive(Default)]
pub struct AdCache {
    entries: Mutex<BTreeMap<String, (Instant, Ad)>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The mutant `cache-not-invalidated`: entries live out their TTL whatever changes.
    stuck: bool,
}

impl AdCache {
    /// A cache; `stuck` is the mutant that never invalidates.
    pub fn new(stuck: bool) -> Self {
        AdCache {
            stuck,
            ..AdCache::default()
        }
    }

    /// The card of `ad_id`, if cached and fresh (counted as a hit or a miss).
    pub fn get(&self, ad_id: &str) -> Option<Ad> {
        let found = self
            .entries
            .lock()
            .ok()
            .and_then(|mut e| match e.get(ad_id) {
                Some((at, ad)) if at.elapsed() < TTL => Some(ad.clone()),
                Some(_) => {
                    e.remove(ad_id);
                    None
                }
                None => None,
            });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `ad`'s card, unless a newer version is cached already.
    pub fn put(&self, ad: Ad) {
        if let Ok(mut e) = self.entries.lock() {
            if e.get(&ad.ad_id)
                .is_some_and(|(_, cached)| cached.version > ad.version)
            {
                return;
            }
            if e.len() >= ENTRIES_MAX {
                let oldest = e
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    e.remove(&k);
                }
            }
            e.insert(ad.ad_id.clone(), (Instant::now(), ad));
        }
    }

    /// Drops `ad_id`'s card unless the cached one is at `version` or newer (`0`: whatever).
    pub fn invalidate(&self, ad_id: &str, version: i64) {
        if self.stuck {
            return;
        }
        if let Ok(mut e) = self.entries.lock() {
            if e.get(ad_id)
                .is_some_and(|(_, cached)| cached.version < version || version == 0)
            {
                e.remove(ad_id);
            }
        }
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// Consumes `ad.changed` as `group` (one group per gateway instance, so every instance sees
/// every change) and drops each changed card, until `shutdown`. Offsets are committed after
/// the drops; a failed round builds a new consumer.
pub async fn invalidate_from_log(
    cache: Arc<AdCache>,
    events: Arc<dyn EventLog>,
    group: String,
    shutdown: Shutdown,
) {
    #[derive(serde::Deserialize)]
    struct Changed {
        version: i64,
        ad: ChangedAd,
    }
    #[derive(serde::Deserialize)]
    struct ChangedAd {
        ad_id: String,
    }
    let mut consumer = None;
    while !shutdown.is_requested() {
        let round = async {
            if consumer.is_none() {
                let config = ConsumerConfig::new(group.clone());
                consumer = Some(
                    events
                        .consumer(config, &[platform::topics::AD_CHANGED])
                        .await?,
                );
            }
            let Some(c) = consumer.as_mut() else {
                return anyhow::Ok(());
            };
            let records = c.poll(Duration::from_millis(500)).await?;
            for r in &records {
                match serde_json::from_slice::<Changed>(&r.payload) {
                    Ok(e) => cache.invalidate(&e.ad.ad_id, e.version),
                    // Not a card we can name: its key is the ad id.
                    Err(_) => cache.invalidate(&r.key, 0),
                }
            }
            if !records.is_empty() {
                c.commit(&records).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = round {
            tracing::debug!(
                error = format!("{e:#}"),
                "ad cache invalidation round failed; reconnecting"
            );
            consumer = None;
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(id: &str, version: i64) -> Ad {
        Ad {
            ad_id: id.into(),
            version,
            ..Ad::default()
        }
    }

    #[test]
    fn cards_are_served_until_a_newer_version_is_announced_and_counted() {
        let c = AdCache::new(false);
        assert_eq!(c.get("a"), None);
        c.put(ad("a", 2));
        assert_eq!(c.get("a").map(|a| a.version), Some(2));
        c.invalidate("a", 2);
        assert_eq!(
            c.get("a").map(|a| a.version),
            Some(2),
            "the same version keeps it"
        );
        c.put(ad("a", 1));
        assert_eq!(
            c.get("a").map(|a| a.version),
            Some(2),
            "an older read does not replace it"
        );
        c.invalidate("a", 3);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.counts(), (3, 2));
    }

    #[test]
    fn the_stuck_mutant_never_drops_a_card() {
        let c = AdCache::new(true);
        c.put(ad("a", 1));
        c.invalidate("a", 0);
        assert!(c.get("a").is_some());
    }
}
