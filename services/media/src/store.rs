//! The media service's typed store: one row per photo upload. SQL: `migrations/media/`;
//! Postgres twin: `adapters::postgres::schemas::media`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError};
use serde::{Deserialize, Serialize};

/// Every state a photo can be in: PENDING until its upload is checked, then READY or
/// REJECTED for good.
pub const STATES: [&str; 3] = ["PENDING", "READY", "REJECTED"];
/// Bound on a rejection's reason (characters).
pub const REASON_CHARS_MAX: usize = 200;

/// A photo: an upload slot and, once checked, a stored object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Photo {
    pub photo_id: String,
    pub owner_id: String,
    pub ad_id: String,
    /// Its key in the bucket.
    pub object_key: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub state: String,
    /// Why a REJECTED photo was rejected (empty otherwise).
    pub reason: String,
    pub created_ms: i64,
    /// When the upload URL stops working.
    pub upload_expires_ms: i64,
    pub updated_ms: i64,
}

/// The constraints the SQL table declares.
fn check(p: &Photo) -> Result<(), StoreError> {
    let chars = |s: &str| s.chars().count();
    let ok = (1..=64).contains(&chars(&p.photo_id))
        && (1..=64).contains(&chars(&p.owner_id))
        && (1..=64).contains(&chars(&p.ad_id))
        && (1..=300).contains(&chars(&p.object_key))
        && (1..=100).contains(&chars(&p.content_type))
        && p.size_bytes > 0
        && STATES.contains(&p.state.as_str())
        && chars(&p.reason) <= REASON_CHARS_MAX;
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "photo {} breaks the photos table's constraints",
            p.photo_id
        )))
    }
}

/// A write of the media store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaWrite {
    /// A new PENDING photo; conflicts when its id or object key is taken.
    Create(Photo),
    /// A PENDING photo decided: READY, or REJECTED with `reason`. Conflicts unless the photo
    /// is still PENDING (the first decision stands).
    Decide {
        photo_id: String,
        state: String,
        reason: String,
        at_ms: i64,
    },
}

/// A read of the media store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaQuery {
    /// The photo `photo_id` (none or one).
    Photo { photo_id: String },
    /// Photos `owner_id` created at or after `since_ms`, at most `limit`, newest first.
    CreatedBy {
        owner_id: String,
        since_ms: i64,
        limit: u32,
    },
    /// PENDING photos whose upload URL expired before `before_ms`, at most `limit`, oldest
    /// first.
    Abandoned { before_ms: i64, limit: u32 },
}

/// The media store's table in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaModel {
    pub photos: BTreeMap<String, Photo>,
}

/// The media store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct MediaSchema;

impl Schema for MediaSchema {
    type Write = MediaWrite;
    type Query = MediaQuery;
    type Answer = Vec<Photo>;
    type Model = MediaModel;

    fn apply(m: &mut MediaModel, write: MediaWrite) -> Result<(), StoreError> {
        match write {
            MediaWrite::Create(photo) => {
                check(&photo)?;
                if photo.state != "PENDING" {
                    return Err(StoreError::Fatal("a new photo is PENDING".into()));
                }
                let taken = m.photos.contains_key(&photo.photo_id)
                    || m.photos.values().any(|p| p.object_key == photo.object_key);
                if taken {
                    return Err(StoreError::conflict("photos", &photo.photo_id));
                }
                m.photos.insert(photo.photo_id.clone(), photo);
            }
            MediaWrite::Decide {
                photo_id,
                state,
                reason,
                at_ms,
            } => {
                if state == "PENDING" {
                    return Err(StoreError::Fatal("a decision is READY or REJECTED".into()));
                }
                let Some(current) = m.photos.get(&photo_id).filter(|p| p.state == "PENDING") else {
                    return Err(StoreError::conflict("photos", &photo_id));
                };
                let decided = Photo {
                    state,
                    reason,
                    updated_ms: at_ms,
                    ..current.clone()
                };
                check(&decided)?;
                m.photos.insert(photo_id, decided);
            }
        }
        Ok(())
    }

    fn query(m: &MediaModel, query: &MediaQuery) -> Vec<Photo> {
        match query {
            MediaQuery::Photo { photo_id } => m.photos.get(photo_id).cloned().into_iter().collect(),
            MediaQuery::CreatedBy {
                owner_id,
                since_ms,
                limit,
            } => {
                let mut mine: Vec<Photo> = m
                    .photos
                    .values()
                    .filter(|p| &p.owner_id == owner_id && p.created_ms >= *since_ms)
                    .cloned()
                    .collect();
                mine.sort_by(|a, b| (b.created_ms, &b.photo_id).cmp(&(a.created_ms, &a.photo_id)));
                mine.truncate(*limit as usize);
                mine
            }
            MediaQuery::Abandoned { before_ms, limit } => {
                let mut old: Vec<Photo> = m
                    .photos
                    .values()
                    .filter(|p| p.state == "PENDING" && p.upload_expires_ms < *before_ms)
                    .cloned()
                    .collect();
                old.sort_by(|a, b| {
                    (a.upload_expires_ms, &a.photo_id).cmp(&(b.upload_expires_ms, &b.photo_id))
                });
                old.truncate(*limit as usize);
                old
            }
        }
    }
}
