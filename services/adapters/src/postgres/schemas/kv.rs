//! The kv schema of the store conformance suite (`platform::store::kv`).

use async_trait::async_trait;
use platform::{
    ports::{StoreError, Versioned},
    store::kv::{Expected, KvQuery, KvSchema, KvWrite},
};
use sqlx::{migrate::Migrator, PgConnection};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/conformance");

#[async_trait]
impl PgSchema for KvSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &KvWrite) -> Result<(), StoreError> {
        match write {
            KvWrite::Check {
                table,
                key,
                expected,
            } => {
                // FOR UPDATE holds an existing row until commit; the absence of a row is not
                // a lock (a check-only `Absent` is for reads; writes use `Put`'s own check).
                let current: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM kv WHERE tbl = $1 AND key = $2 FOR UPDATE",
                )
                .bind(table)
                .bind(key)
                .fetch_optional(&mut *db)
                .await
                .map_err(|e| store_error("check kv", e))?;
                let ok = match expected {
                    Expected::Any => true,
                    Expected::Absent => current.is_none(),
                    Expected::At(v) => current == Some(*v),
                };
                if ok {
                    Ok(())
                } else {
                    Err(StoreError::conflict(table, key))
                }
            }
            KvWrite::Put {
                table,
                key,
                expected,
                body,
                ..
            } => {
                let sql = match expected {
                    Expected::Any => {
                        "INSERT INTO kv (tbl, key, version, body) VALUES ($1, $2, 1, $3) \
                         ON CONFLICT (tbl, key) DO UPDATE SET version = kv.version + 1, body = EXCLUDED.body"
                    }
                    Expected::Absent => {
                        "INSERT INTO kv (tbl, key, version, body) VALUES ($1, $2, 1, $3) \
                         ON CONFLICT DO NOTHING"
                    }
                    Expected::At(_) => {
                        "UPDATE kv SET version = version + 1, body = $3 \
                         WHERE tbl = $1 AND key = $2 AND version = $4"
                    }
                };
                let mut q = sqlx::query(sql).bind(table).bind(key).bind(body);
                if let Expected::At(v) = expected {
                    q = q.bind(v);
                }
                let rows = q
                    .execute(&mut *db)
                    .await
                    .map_err(|e| store_error("put kv", e))?
                    .rows_affected();
                one_row(rows, table, key)
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &KvQuery,
    ) -> Result<Option<Versioned<serde_json::Value>>, StoreError> {
        let KvQuery::Get { table, key } = query;
        let row: Option<(i64, serde_json::Value)> =
            sqlx::query_as("SELECT version, body FROM kv WHERE tbl = $1 AND key = $2")
                .bind(table)
                .bind(key)
                .fetch_optional(&mut *db)
                .await
                .map_err(|e| store_error("get kv", e))?;
        Ok(row.map(|(version, value)| Versioned { version, value }))
    }
}
