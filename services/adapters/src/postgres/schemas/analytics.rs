//! The analytics mart (`analytics::store`).

use std::collections::BTreeMap;

use analytics::{MartAnswer, MartQuery, MartSchema, MartWrite};
use async_trait::async_trait;
use platform::ports::StoreError;
use sqlx::{migrate::Migrator, PgConnection};

use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/analytics");

#[async_trait]
impl PgSchema for MartSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &MartWrite) -> Result<(), StoreError> {
        let MartWrite::Add { key, by } = write;
        sqlx::query(
            "INSERT INTO mart (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = mart.value + EXCLUDED.value",
        )
        .bind(key)
        .bind(by)
        .execute(&mut *db)
        .await
        .map_err(|e| store_error("add to mart", e))?;
        Ok(())
    }

    async fn query(db: &mut PgConnection, query: &MartQuery) -> Result<MartAnswer, StoreError> {
        match query {
            MartQuery::All => {
                let rows: Vec<(String, i64)> = sqlx::query_as("SELECT key, value FROM mart")
                    .fetch_all(&mut *db)
                    .await
                    .map_err(|e| store_error("read mart", e))?;
                Ok(MartAnswer::All(
                    rows.into_iter().collect::<BTreeMap<_, _>>(),
                ))
            }
            MartQuery::Counter(key) => {
                let value: Option<i64> =
                    sqlx::query_scalar("SELECT value FROM mart WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&mut *db)
                        .await
                        .map_err(|e| store_error("read mart counter", e))?;
                Ok(MartAnswer::Counter(value.unwrap_or(0)))
            }
        }
    }
}
