//! The media service's table (`media::store`).

use async_trait::async_trait;
use media::{MediaQuery, MediaSchema, MediaWrite, Photo};
use platform::ports::StoreError;
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/media");

const COLUMNS: &str = "photo_id, owner_id, ad_id, object_key, content_type, size_bytes, state, \
     reason, created_ms, upload_expires_ms, updated_ms";

fn photo(row: &PgRow) -> Result<Photo, sqlx::Error> {
    Ok(Photo {
        photo_id: row.try_get("photo_id")?,
        owner_id: row.try_get("owner_id")?,
        ad_id: row.try_get("ad_id")?,
        object_key: row.try_get("object_key")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        state: row.try_get("state")?,
        reason: row.try_get("reason")?,
        created_ms: row.try_get("created_ms")?,
        upload_expires_ms: row.try_get("upload_expires_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

#[async_trait]
impl PgSchema for MediaSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &MediaWrite) -> Result<(), StoreError> {
        match write {
            MediaWrite::Create(p) => {
                if p.state != "PENDING" {
                    return Err(StoreError::Fatal("a new photo is PENDING".into()));
                }
                let rows = sqlx::query(&format!(
                    "INSERT INTO photos ({COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
                ))
                .bind(&p.photo_id)
                .bind(&p.owner_id)
                .bind(&p.ad_id)
                .bind(&p.object_key)
                .bind(&p.content_type)
                .bind(p.size_bytes)
                .bind(&p.state)
                .bind(&p.reason)
                .bind(p.created_ms)
                .bind(p.upload_expires_ms)
                .bind(p.updated_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert photo", e))?;
                one_row(rows.rows_affected(), "photos", &p.photo_id)
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
                let rows = sqlx::query(
                    "UPDATE photos SET state = $2, reason = $3, updated_ms = $4 \
                     WHERE photo_id = $1 AND state = 'PENDING'",
                )
                .bind(photo_id)
                .bind(state)
                .bind(reason)
                .bind(at_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("decide photo", e))?;
                one_row(rows.rows_affected(), "photos", photo_id)
            }
        }
    }

    async fn query(db: &mut PgConnection, query: &MediaQuery) -> Result<Vec<Photo>, StoreError> {
        let rows = match query {
            MediaQuery::Photo { photo_id } => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM photos WHERE photo_id = $1"))
                    .bind(photo_id)
                    .fetch_all(&mut *db)
                    .await
            }
            MediaQuery::CreatedBy {
                owner_id,
                since_ms,
                limit,
            } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM photos WHERE owner_id = $1 AND created_ms >= $2 \
                     ORDER BY created_ms DESC, photo_id COLLATE \"C\" DESC LIMIT $3"
                ))
                .bind(owner_id)
                .bind(since_ms)
                .bind(i64::from(*limit))
                .fetch_all(&mut *db)
                .await
            }
            MediaQuery::Abandoned { before_ms, limit } => {
                sqlx::query(&format!(
                "SELECT {COLUMNS} FROM photos WHERE state = 'PENDING' AND upload_expires_ms < $1 \
                     ORDER BY upload_expires_ms, photo_id COLLATE \"C\" LIMIT $2"
            ))
                .bind(before_ms)
                .bind(i64::from(*limit))
                .fetch_all(&mut *db)
                .await
            }
        }
        .map_err(|e| store_error("read photos", e))?;
        rows.iter()
            .map(photo)
            .collect::<Result<_, _>>()
            .map_err(|e| store_error("decode photo", e))
    }
}
