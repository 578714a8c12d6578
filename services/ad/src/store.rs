//! The ad service's typed store: ads and the create requests that made them. SQL:
//! `migrations/ad/`; Postgres twin: `adapters::postgres::schemas::ad`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError, Versioned};
use serde::{Deserialize, Serialize};

/// Every status an ad can be in.
pub const STATUSES: [&str; 4] = ["ACTIVE", "HIDDEN", "BANNED", "DELETED"];
/// Bounds the SQL table declares.
pub const TITLE_CHARS: std::ops::RangeInclusive<usize> = 1..=200;
pub const DESCRIPTION_CHARS_MAX: usize = 5000;
pub const SLUG_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
pub const PHOTOS_MAX: usize = 10;

/// An ad.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ad {
    pub ad_id: String,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub category: String,
    pub region: String,
    /// Media ids, in display order.
    pub photos: Vec<String>,
    pub status: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The constraints the SQL table declares.
fn check(a: &Ad) -> Result<(), StoreError> {
    let chars = |s: &str| s.chars().count();
    let ok = (1..=64).contains(&chars(&a.ad_id))
        && (1..=64).contains(&chars(&a.owner_id))
        && TITLE_CHARS.contains(&chars(&a.title))
        && chars(&a.description) <= DESCRIPTION_CHARS_MAX
        && a.price_minor > 0
        && chars(&a.currency) == 3
        && SLUG_CHARS.contains(&chars(&a.category))
        && SLUG_CHARS.contains(&chars(&a.region))
        && a.photos.len() <= PHOTOS_MAX
        && STATUSES.contains(&a.status.as_str());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "ad {} breaks the ads table's constraints",
            a.ad_id
        )))
    }
}

/// A write of the ad store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdWrite {
    /// A new ad made by the create request `request_key`; conflicts when the ad id or the
    /// request key is taken.
    Create { ad: Ad, request_key: String },
    /// The ad at `version`, replaced (its id, owner and creation time stay).
    Update { ad: Ad, version: i64 },
}

/// A read of the ad store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdQuery {
    Ad {
        ad_id: String,
    },
    /// The ad the create request `request_key` made.
    ByRequest {
        request_key: String,
    },
}

/// The ad store's tables in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdModel {
    pub ads: BTreeMap<String, Versioned<Ad>>,
    /// Create requests: idempotency key → ad id.
    pub requests: BTreeMap<String, String>,
}

/// The ad store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdSchema;

impl Schema for AdSchema {
    type Write = AdWrite;
    type Query = AdQuery;
    type Answer = Option<Versioned<Ad>>;
    type Model = AdModel;

    fn apply(m: &mut AdModel, write: AdWrite) -> Result<(), StoreError> {
        match write {
            AdWrite::Create { ad, request_key } => {
                // As PostgreSQL runs the two inserts: each row's constraints, then its key.
                check(&ad)?;
                if m.ads.contains_key(&ad.ad_id) {
                    return Err(StoreError::conflict("ads", &ad.ad_id));
                }
                if !(1..=200).contains(&request_key.chars().count()) {
                    return Err(StoreError::Fatal("request key out of bounds".into()));
                }
                if m.requests.contains_key(&request_key) {
                    return Err(StoreError::conflict("ads", &ad.ad_id));
                }
                m.requests.insert(request_key, ad.ad_id.clone());
                m.ads.insert(
                    ad.ad_id.clone(),
                    Versioned {
                        version: 1,
                        value: ad,
                    },
                );
            }
            AdWrite::Update { ad, version } => {
                let Some(current) = m.ads.get(&ad.ad_id).filter(|c| c.version == version) else {
                    return Err(StoreError::conflict("ads", &ad.ad_id));
                };
                let value = Ad {
                    ad_id: current.value.ad_id.clone(),
                    owner_id: current.value.owner_id.clone(),
                    created_ms: current.value.created_ms,
                    ..ad
                };
                check(&value)?;
                m.ads.insert(
                    value.ad_id.clone(),
                    Versioned {
                        version: version + 1,
                        value,
                    },
                );
            }
        }
        Ok(())
    }

    fn query(m: &AdModel, query: &AdQuery) -> Self::Answer {
        match query {
            AdQuery::Ad { ad_id } => m.ads.get(ad_id).cloned(),
            AdQuery::ByRequest { request_key } => m
                .requests
                .get(request_key)
                .and_then(|id| m.ads.get(id))
                .cloned(),
        }
    }
}
