//! The gateway's response cache for public reads: ad cards (`GET /v1/ads/{id}` without a
//! token) and search pages (`GET /v1/search`).
//!
//! Local to each gateway instance. Nothing must be shared: a card or a page is cheap to fetch
//! again, and no guarantee rests on two gateways answering alike (each drops what changed on
//! its own). A card lives at most [`TTL`] and a page at most [`PAGE_TTL`] (the `max-age` each
//! is served with); both are dropped at once when
//! - this gateway changes the ad (PUT, PATCH, DELETE through it), so a client reads its own
//!   writes through the gateway it wrote through;
//! - any gateway's change reaches `ad.changed`, which every instance consumes in a group of
//!   its own ([`invalidate_from_log`]).
//!
//! A page is dropped when it shows an older version of the changed ad. A page that should now
//! show an ad it does not (a new ad, or one that now matches) lives out its TTL: the search
//! index follows `ad.changed` itself, so dropping every page on every change would mostly
//! cache the index's previous answer again.
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
/// How long a search page may be served from the cache.
pub const PAGE_TTL: Duration = Duration::from_secs(5);
/// Bound on cached search pages; past it the oldest are dropped.
pub const PAGES_MAX: usize = 2_000;

/// Cached ad cards and search pages, and how often they served.
#[derive(Default)]
pub struct AdCache {
    entries: Mutex<BTreeMap<String, (Instant, Ad)>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Pages by their request's key.
    pages: Mutex<BTreeMap<String, (Instant, crate::search::SearchResults)>>,
    page_hits: AtomicU64,
    page_misses: AtomicU64,
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

    /// Drops `ad_id`'s card unless the cached one is at `version` or newer, and every page
    /// showing the ad at an older version (`0`: whatever version).
    pub fn invalidate(&self, ad_id: &str, version: i64) {
        if self.stuck {
            return;
        }
        let older = |cached: i64| cached < version || version == 0;
        if let Ok(mut e) = self.entries.lock() {
            if e.get(ad_id)
                .is_some_and(|(_, cached)| older(cached.version))
            {
                e.remove(ad_id);
            }
        }
        if let Ok(mut pages) = self.pages.lock() {
            pages.retain(|_, (_, page)| {
                !page
                    .items
                    .iter()
                    .any(|i| i.ad_id == ad_id && older(i.version))
            });
        }
    }

    /// The search page of request `key`, if cached and fresh (counted as a hit or a miss).
    pub fn page(&self, key: &str) -> Option<crate::search::SearchResults> {
        let found = self.pages.lock().ok().and_then(|mut p| match p.get(key) {
            Some((at, page)) if at.elapsed() < PAGE_TTL => Some(page.clone()),
            Some(_) => {
                p.remove(key);
                None
            }
            None => None,
        });
        let counter = if found.is_some() {
            &self.page_hits
        } else {
            &self.page_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps the search page of request `key`.
    pub fn put_page(&self, key: String, page: crate::search::SearchResults) {
        if let Ok(mut p) = self.pages.lock() {
            if p.len() >= PAGES_MAX {
                let oldest = p
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    p.remove(&k);
                }
            }
            p.insert(key, (Instant::now(), page));
        }
    }

    /// Cards: (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Search pages: (hits, misses) so far.
    pub fn page_counts(&self) -> (u64, u64) {
        (
            self.page_hits.load(Ordering::Relaxed),
            self.page_misses.load(Ordering::Relaxed),
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

    fn page(items: &[(&str, i64)]) -> crate::search::SearchResults {
        crate::search::SearchResults {
            items: items
                .iter()
                .map(|(id, version)| crate::search::SearchItem {
                    ad_id: (*id).into(),
                    owner_id: "u".into(),
                    title: "t".into(),
                    description: String::new(),
                    price: crate::ads::Price {
                        amount_minor: 1,
                        currency: "RUB".into(),
                    },
                    category: "c".into(),
                    region: "r".into(),
                    version: *version,
                    created_ms: 0,
                })
                .collect(),
            next_cursor: None,
        }
    }

    #[test]
    fn a_page_is_dropped_when_an_ad_it_shows_changes_and_counted() {
        let c = AdCache::new(false);
        assert!(c.page("q=bike").is_none());
        c.put_page("q=bike".into(), page(&[("a", 2), ("b", 1)]));
        c.put_page("q=lamp".into(), page(&[("c", 1)]));
        assert!(c.page("q=bike").is_some());
        c.invalidate("a", 2);
        assert!(c.page("q=bike").is_some(), "the version it shows");
        c.invalidate("b", 2);
        assert!(c.page("q=bike").is_none(), "b changed");
        assert!(c.page("q=lamp").is_some(), "other pages stay");
        assert_eq!(c.page_counts(), (3, 2));
    }

    #[test]
    fn the_stuck_mutant_never_drops_a_card() {
        let c = AdCache::new(true);
        c.put(ad("a", 1));
        c.invalidate("a", 0);
        assert!(c.get("a").is_some());
    }
}
