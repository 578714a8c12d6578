//! [`PgStore`]: the [`Store`] port on Postgres, one schema per service.
//!
//! A [`Tx`] commits in one database transaction (READ COMMITTED):
//! 1. take a transaction-scoped advisory lock on every record key the transaction checks or
//!    writes, in ascending lock-id order (no deadlocks between commits). Row locks alone
//!    cannot guard "this key is still absent", advisory locks can, so two commits that both
//!    expect a key to be absent cannot both insert it;
//! 2. check every [`Expect`](platform::ports::Expect) (the first that fails: rollback,
//!    `Conflict`);
//! 3. insert the inbox marks (`ON CONFLICT DO NOTHING`; a mark that was already there: rollback,
//!    `Duplicate`);
//! 4. upsert the records (version + 1), insert the outbox rows, commit.
//!
//! Semantics are those of [`platform::store::MemoryState::apply`], checked by the shared
//! conformance suite. Two differences: outbox ids come from a sequence, so they have gaps and a
//! row becomes visible at its transaction's commit (commits that touch the same record are
//! serialised by its lock, so per record the order is commit order); and an outbox `event_id`
//! used twice is refused (`Fatal`, it is a bug) by the table's unique constraint.

mod error;
mod schema;

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use platform::ports::{OutboxMessage, OutboxRow, Store, StoreError, Tx, Versioned};
use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
    types::Json,
    Connection, Executor, PgConnection, Postgres, Row, Transaction,
};

use error::store_error;
pub use error::ConnectError;
pub use schema::{InvalidSchemaName, SchemaName};

/// The platform migrations (`migrations/platform`), run in the service's schema.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/platform");

/// Limits of one [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgStoreConfig {
    /// Upper bound on open connections; further callers queue for `acquire_timeout`.
    pub pool_connections_max: u32,
    /// How long a call waits for a free connection before it fails `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side bound on every statement, lock waits included (`statement_timeout`).
    pub statement_timeout: Duration,
}

impl Default for PgStoreConfig {
    fn default() -> Self {
        PgStoreConfig {
            pool_connections_max: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The store of one service: its own schema in a Postgres database.
#[derive(Clone, Debug)]
pub struct PgStore {
    /// At most `pool_connections_max` connections, each with `search_path` set to `schema`;
    /// callers beyond that wait up to `acquire_timeout`, then get `Unavailable`.
    pool: PgPool,
    /// Also salts the advisory lock ids, so services sharing a database never contend.
    schema: SchemaName,
}

impl PgStore {
    /// Connects with [`PgStoreConfig::default`]; see [`PgStore::connect_with`].
    pub async fn connect(database_url: &str, schema: &SchemaName) -> Result<Self, ConnectError> {
        Self::connect_with(database_url, schema, PgStoreConfig::default()).await
    }

    /// Creates `schema` if missing, opens a bounded pool whose connections use it as their
    /// `search_path`, and runs the platform migrations in it.
    #[tracing::instrument(skip_all, fields(schema = %schema))]
    pub async fn connect_with(
        database_url: &str,
        schema: &SchemaName,
        config: PgStoreConfig,
    ) -> Result<Self, ConnectError> {
        let options = PgConnectOptions::from_str(database_url).map_err(ConnectError::Url)?;
        create_schema(&options, schema)
            .await
            .map_err(|source| ConnectError::CreateSchema {
                schema: schema.clone(),
                source,
            })?;
        let session_setup = format!(
            "SET search_path TO {}; SET statement_timeout = {};",
            schema.quoted(),
            config.statement_timeout.as_millis()
        );
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_connections_max)
            .acquire_timeout(config.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let sql = session_setup.clone();
                Box::pin(async move {
                    // No bind parameters: the simple protocol, which takes both statements.
                    conn.execute(sql.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| ConnectError::Pool {
                schema: schema.clone(),
                source,
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| ConnectError::Migrate {
                schema: schema.clone(),
                source,
            })?;
        tracing::info!("store ready");
        Ok(PgStore {
            pool,
            schema: schema.clone(),
        })
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Steps 1 to 4 of the module doc, inside `db`.
    async fn apply(&self, db: &mut Transaction<'_, Postgres>, tx: Tx) -> Result<(), StoreError> {
        let locks = record_locks(&self.schema, &tx);
        if !locks.is_empty() {
            // unnest yields the (sorted) array in order, so the locks are taken in order.
            sqlx::query("SELECT count(pg_advisory_xact_lock(id)) FROM unnest($1::bigint[]) AS id")
                .bind(&locks)
                .execute(&mut **db)
                .await
                .map_err(|e| store_error("lock records", e))?;
        }

        if !tx.expect.is_empty() {
            let tables: Vec<&str> = tx.expect.iter().map(|e| e.table.as_str()).collect();
            let keys: Vec<&str> = tx.expect.iter().map(|e| e.key.as_str()).collect();
            let current: Vec<Option<i64>> = sqlx::query(
                "SELECT r.version FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(tbl, key, i) \
                 LEFT JOIN records r ON r.tbl = e.tbl AND r.key = e.key ORDER BY e.i",
            )
            .bind(&tables)
            .bind(&keys)
            .fetch_all(&mut **db)
            .await
            .map_err(|e| store_error("check versions", e))?
            .iter()
            .map(|row| row.try_get::<Option<i64>, _>(0))
            .collect::<Result<_, _>>()
            .map_err(|e| store_error("decode versions", e))?;
            if let Some(failed) = tx
                .expect
                .iter()
                .zip(&current)
                .find(|(expect, current)| expect.version != **current)
            {
                return Err(StoreError::Conflict {
                    table: failed.0.table.clone(),
                    key: failed.0.key.clone(),
                });
            }
        }

        for mark in &tx.inbox {
            let inserted = sqlx::query(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&mark.consumer)
            .bind(&mark.event_id)
            .execute(&mut **db)
            .await
            .map_err(|e| store_error("insert inbox mark", e))?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::Duplicate {
                    consumer: mark.consumer.clone(),
                    event_id: mark.event_id.clone(),
                });
            }
        }

        for put in &tx.puts {
            sqlx::query(
                "INSERT INTO records (tbl, key, version, body, active) VALUES ($1, $2, 1, $3, $4) \
                 ON CONFLICT (tbl, key) DO UPDATE \
                 SET version = records.version + 1, body = EXCLUDED.body, active = EXCLUDED.active",
            )
            .bind(&put.table)
            .bind(&put.key)
            .bind(&put.body)
            .bind(put.active)
            .execute(&mut **db)
            .await
            .map_err(|e| store_error("put record", e))?;
        }

        for message in &tx.outbox {
            sqlx::query(
                "INSERT INTO outbox (event_id, topic, key, payload, headers) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&message.event_id)
            .bind(&message.topic)
            .bind(&message.key)
            .bind(&message.payload)
            .bind(Json(&message.headers))
            .execute(&mut **db)
            .await
            .map_err(|e| store_error("insert outbox row", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn get(&self, table: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        sqlx::query("SELECT version, body FROM records WHERE tbl = $1 AND key = $2")
            .bind(table)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("get", e))?
            .map(|row| versioned(&row))
            .transpose()
    }

    async fn list_active(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        sqlx::query(
            "SELECT key, version, body FROM records WHERE tbl = $1 AND active ORDER BY key LIMIT $2",
        )
        .bind(table)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error("list active", e))?
        .iter()
        .map(|row| {
            let key = row
                .try_get("key")
                .map_err(|e| store_error("decode key", e))?;
            Ok((key, versioned(row)?))
        })
        .collect()
    }

    #[tracing::instrument(skip_all, fields(schema = %self.schema, puts = tx.puts.len(), outbox = tx.outbox.len()))]
    async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        let mut db = self
            .pool
            .begin()
            .await
            .map_err(|e| store_error("begin", e))?;
        match self.apply(&mut db, tx).await {
            Ok(()) => db.commit().await.map_err(|e| store_error("commit", e)),
            Err(refused) => {
                if let Err(e) = db.rollback().await {
                    // The server rolls back on its own when the connection goes; the
                    // refusal is what the caller must see.
                    tracing::debug!(error = %e, "rollback failed");
                }
                Err(refused)
            }
        }
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        sqlx::query(
            "SELECT id, event_id, topic, key, payload, headers FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error("outbox pending", e))?
        .iter()
        .map(outbox_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| store_error("decode outbox row", e))
    }

    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1) AND sent_at IS NULL")
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("outbox mark sent", e))?;
        Ok(())
    }
}

/// Creates `schema` over a one-off connection (the pool's connections need it to exist).
async fn create_schema(options: &PgConnectOptions, schema: &SchemaName) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect_with(options).await?;
    let created = sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()))
        .execute(&mut conn)
        .await;
    conn.close().await?;
    match created {
        // Two processes racing on IF NOT EXISTS: the loser sees a unique violation.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The advisory lock ids of every record `tx` checks or writes, sorted and deduplicated.
/// Ids hash schema, table and key (a collision only serialises two unrelated commits).
fn record_locks(schema: &SchemaName, tx: &Tx) -> Vec<i64> {
    let keys = tx
        .expect
        .iter()
        .map(|e| (&e.table, &e.key))
        .chain(tx.puts.iter().map(|p| (&p.table, &p.key)));
    let mut locks: Vec<i64> = keys
        .map(|(table, key)| lock_id(&[schema.as_str(), table, key]))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    locks
}

/// 64-bit FNV-1a over the parts, each followed by a NUL (stable across processes and builds).
fn lock_id(parts: &[&str]) -> i64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash as i64
}

/// A `LIMIT` parameter: Postgres takes a bigint.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn versioned(row: &PgRow) -> Result<Versioned, StoreError> {
    let decode = || -> Result<Versioned, sqlx::Error> {
        Ok(Versioned {
            version: row.try_get("version")?,
            body: row.try_get("body")?,
        })
    };
    decode().map_err(|e| store_error("decode record", e))
}

fn outbox_row(row: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    let Json(headers): Json<Vec<(String, String)>> = row.try_get("headers")?;
    Ok(OutboxRow {
        id: row.try_get("id")?,
        message: OutboxMessage {
            event_id: row.try_get("event_id")?,
            topic: row.try_get("topic")?,
            key: row.try_get("key")?,
            payload: row.try_get("payload")?,
            headers,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_sorted_and_deduplicated() {
        let schema = SchemaName::parse("order").expect("valid");
        let tx = Tx::new()
            .expect("orders", "o-1", Some(1))
            .put("orders", "o-1", serde_json::json!({}), true)
            .put("orders", "o-2", serde_json::json!({}), true);
        let locks = record_locks(&schema, &tx);
        assert_eq!(locks.len(), 2);
        assert!(locks[0] < locks[1]);
        assert_eq!(locks, record_locks(&schema, &tx));
    }

    #[test]
    fn the_same_key_in_another_schema_or_table_takes_another_lock() {
        let a = lock_id(&["order", "orders", "o-1"]);
        assert_ne!(a, lock_id(&["payment", "orders", "o-1"]));
        assert_ne!(a, lock_id(&["order", "order", "so-1"]));
        // FNV-1a reference: the empty input hashes to the offset basis.
        assert_eq!(lock_id(&[]) as u64, 0xcbf2_9ce4_8422_2325);
    }
}
