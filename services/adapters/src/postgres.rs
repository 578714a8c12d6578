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
//!
//! **Cancellation.** sqlx's `Pool::begin` is not cancel-safe on Postgres (0.8.6 and 0.9.0):
//! a future dropped while `BEGIN` is in flight returns its connection to the pool inside an
//! open transaction, and the next borrower's statements run in it (they hold its locks,
//! fail with 25P02 after an error, and are lost if nobody commits). A gRPC deadline drops
//! handlers at any await, so [`PgStore::commit`] runs the whole transaction in a task of its
//! own that the caller's cancellation does not reach, and a connection whose transaction did
//! not end cleanly (begin, commit or rollback failed) is closed, never returned to the pool.
//! `tests/integration/store.rs` reproduces the upstream bug and shows the store immune.

mod error;
mod schema;

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use platform::ports::{
    Claimed, Cleaned, OutboxMessage, OutboxRow, Store, StoreError, Tx, Versioned,
};
use sqlx::{
    migrate::Migrator,
    pool::PoolConnection,
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

    /// The pool (for diagnostics and tests; service logic goes through the [`Store`] port).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins, applies and commits `tx` on a connection of its own. A connection whose
    /// transaction did not end cleanly is closed instead of going back to the pool.
    async fn commit_to_end(&self, tx: Tx) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| store_error("acquire", e))?;
        let outcome = self.transaction_on(&mut conn, tx).await;
        if !outcome.connection_clean {
            conn.close_on_drop();
        }
        outcome.result
    }

    async fn transaction_on(&self, conn: &mut PoolConnection<Postgres>, tx: Tx) -> TxOutcome {
        let mut db = match conn.begin().await {
            Ok(db) => db,
            Err(e) => return TxOutcome::broken(store_error("begin", e)),
        };
        match self.apply(&mut db, tx).await {
            Ok(()) => match db.commit().await {
                Ok(()) => TxOutcome::clean(Ok(())),
                Err(e) => TxOutcome::broken(store_error("commit", e)),
            },
            Err(refused) => match db.rollback().await {
                Ok(()) => TxOutcome::clean(Err(refused)),
                Err(e) => {
                    // The refusal is what the caller must see; the connection goes.
                    tracing::warn!(error = %e, "rollback failed; closing the connection");
                    TxOutcome::broken(refused)
                }
            },
        }
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

        for claim in &tx.claims {
            // FOR UPDATE: a concurrent claim_active cannot pass the record to another owner
            // between this check and the commit.
            let held: Option<(Option<String>, i64)> = sqlx::query_as(
                "SELECT claim_owner, claim_token FROM records WHERE tbl = $1 AND key = $2 FOR UPDATE",
            )
            .bind(&claim.table)
            .bind(&claim.key)
            .fetch_optional(&mut **db)
            .await
            .map_err(|e| store_error("check claim", e))?;
            let still_held = held.is_some_and(|(owner, token)| {
                owner.as_deref() == Some(claim.owner.as_str()) && token == claim.token
            });
            if !still_held {
                return Err(StoreError::Conflict {
                    table: claim.table.clone(),
                    key: claim.key.clone(),
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
        // The transaction runs to its end in its own task, whatever happens to the caller
        // (see the module doc's "Cancellation").
        let store = self.clone();
        tokio::spawn(async move { store.commit_to_end(tx).await })
            .await
            .map_err(|e| StoreError::Fatal(format!("commit task failed: {e}")))?
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

    async fn claim_active(
        &self,
        table: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        // One statement, so no transaction can be left open. The CTE takes over records
        // nobody holds or whose holder's liveness lease ran out (SKIP LOCKED passes over
        // records a commit is writing; they are taken next round); the outer query lists what
        // `owner` held before, from the statement's snapshot, so the two parts are disjoint.
        let mut claimed: Vec<Claimed> = sqlx::query(
            "WITH picked AS ( \
                 SELECT r.tbl, r.key FROM records r \
                 LEFT JOIN leases l ON l.name = 'instance/' || r.claim_owner \
                 WHERE r.tbl = $1 AND r.active AND r.claim_owner IS DISTINCT FROM $2 \
                   AND (r.claim_owner IS NULL OR l.owner IS DISTINCT FROM r.claim_owner \
                        OR l.until <= clock_timestamp()) \
                 ORDER BY r.key LIMIT $3 FOR UPDATE OF r SKIP LOCKED), \
             taken AS ( \
                 UPDATE records r SET claim_owner = $2, claim_token = r.claim_token + 1 \
                 FROM picked WHERE r.tbl = picked.tbl AND r.key = picked.key \
                 RETURNING r.key, r.version, r.body, r.claim_token) \
             (SELECT key, version, body, claim_token FROM records \
              WHERE tbl = $1 AND active AND claim_owner = $2 ORDER BY key LIMIT $3) \
             UNION ALL SELECT key, version, body, claim_token FROM taken",
        )
        .bind(table)
        .bind(owner)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error("claim active", e))?
        .iter()
        .map(|row| {
            Ok(Claimed {
                key: row
                    .try_get("key")
                    .map_err(|e| store_error("decode key", e))?,
                record: versioned(row)?,
                token: row
                    .try_get("claim_token")
                    .map_err(|e| store_error("decode claim token", e))?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        claimed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(claimed)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO leases (name, owner, token, until) \
             VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET \
                 token = CASE WHEN leases.owner = EXCLUDED.owner THEN leases.token ELSE leases.token + 1 END, \
                 owner = EXCLUDED.owner, \
                 until = EXCLUDED.until \
             WHERE leases.owner = EXCLUDED.owner OR leases.until <= clock_timestamp() \
             RETURNING token",
        )
        .bind(name)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("acquire lease", e))
    }

    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError> {
        let secs = retention.as_secs_f64();
        let outbox = sqlx::query(
            "DELETE FROM outbox WHERE sent_at <= clock_timestamp() - make_interval(secs => $1)",
        )
        .bind(secs)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("clean outbox", e))?;
        let inbox = sqlx::query(
            "DELETE FROM inbox WHERE processed_at <= clock_timestamp() - make_interval(secs => $1)",
        )
        .bind(secs)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("clean inbox", e))?;
        Ok(Cleaned {
            outbox_rows: outbox.rows_affected(),
            inbox_marks: inbox.rows_affected(),
        })
    }
}

/// How a transaction ended, and whether its connection may go back to the pool.
struct TxOutcome {
    result: Result<(), StoreError>,
    connection_clean: bool,
}

impl TxOutcome {
    fn clean(result: Result<(), StoreError>) -> Self {
        TxOutcome {
            result,
            connection_clean: true,
        }
    }
    fn broken(e: StoreError) -> Self {
        TxOutcome {
            result: Err(e),
            connection_clean: false,
        }
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
