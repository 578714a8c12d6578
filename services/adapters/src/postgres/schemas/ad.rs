//! The ad service's tables (`ad::store`).

use ad::{Ad, AdQuery, AdSchema, AdWrite};
use async_trait::async_trait;
use platform::ports::{StoreError, Versioned};
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/ad");

const COLUMNS: &str = "a.ad_id, a.owner_id, a.title, a.description, a.price_minor, a.currency, \
     a.category, a.region, a.photos, a.status, a.created_ms, a.updated_ms, a.version";

fn ad(row: &PgRow) -> Result<Versioned<Ad>, sqlx::Error> {
    Ok(Versioned {
        version: row.try_get("version")?,
        value: Ad {
            ad_id: row.try_get("ad_id")?,
            owner_id: row.try_get("owner_id")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            price_minor: row.try_get("price_minor")?,
            currency: row.try_get("currency")?,
            category: row.try_get("category")?,
            region: row.try_get("region")?,
            photos: row.try_get("photos")?,
            status: row.try_get("status")?,
            created_ms: row.try_get("created_ms")?,
            updated_ms: row.try_get("updated_ms")?,
        },
    })
}

#[async_trait]
impl PgSchema for AdSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &AdWrite) -> Result<(), StoreError> {
        match write {
            AdWrite::Create { ad: a, request_key } => {
                let rows = sqlx::query(
                    "INSERT INTO ads (ad_id, owner_id, title, description, price_minor, currency, \
                     category, region, photos, status, created_ms, updated_ms, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&a.ad_id)
                .bind(&a.owner_id)
                .bind(&a.title)
                .bind(&a.description)
                .bind(a.price_minor)
                .bind(&a.currency)
                .bind(&a.category)
                .bind(&a.region)
                .bind(&a.photos)
                .bind(&a.status)
                .bind(a.created_ms)
                .bind(a.updated_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert ad", e))?;
                one_row(rows.rows_affected(), "ads", &a.ad_id)?;
                let rows = sqlx::query(
                    "INSERT INTO ad_requests (request_key, ad_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(request_key)
                .bind(&a.ad_id)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert ad request", e))?;
                one_row(rows.rows_affected(), "ads", &a.ad_id)
            }
            AdWrite::Update { ad: a, version } => {
                let rows = sqlx::query(
                    "UPDATE ads SET title = $2, description = $3, price_minor = $4, currency = $5, \
                     category = $6, region = $7, photos = $8, status = $9, updated_ms = $10, \
                     version = version + 1 WHERE ad_id = $1 AND version = $11",
                )
                .bind(&a.ad_id)
                .bind(&a.title)
                .bind(&a.description)
                .bind(a.price_minor)
                .bind(&a.currency)
                .bind(&a.category)
                .bind(&a.region)
                .bind(&a.photos)
                .bind(&a.status)
                .bind(a.updated_ms)
                .bind(version)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("update ad", e))?;
                one_row(rows.rows_affected(), "ads", &a.ad_id)
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &AdQuery,
    ) -> Result<Option<Versioned<Ad>>, StoreError> {
        let row = match query {
            AdQuery::Ad { ad_id } => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM ads a WHERE a.ad_id = $1"))
                    .bind(ad_id)
                    .fetch_optional(&mut *db)
                    .await
            }
            AdQuery::ByRequest { request_key } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM ad_requests r JOIN ads a ON a.ad_id = r.ad_id \
                     WHERE r.request_key = $1"
                ))
                .bind(request_key)
                .fetch_optional(&mut *db)
                .await
            }
        }
        .map_err(|e| store_error("read ad", e))?;
        row.as_ref()
            .map(ad)
            .transpose()
            .map_err(|e| store_error("decode ad", e))
    }
}
