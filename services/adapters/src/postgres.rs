//! [`PgStore`]: the store port on Postgres, one schema per service.
//!
//! The service's typed tables come from its [`PgSchema`] (its migrations, SQL for each write
//! and query; `schemas/`), the shared tables (outbox, inbox, work items, leases) from
//! `migrations/platform`; both run in the service's schema at start, as one migration history.
//!
//! A [`Tx`] commits in one database transaction (READ COMMITTED), checking in the model's
//! order: the claim checks (`FOR UPDATE`, so a concurrent claim cannot pass the item on before
//! the commit), the inbox marks (`ON CONFLICT DO NOTHING`; one already there means
//! `Duplicate`), the service's writes in order (each carries its own optimistic check:
//! `UPDATE … WHERE version = $v`, `INSERT … ON CONFLICT DO NOTHING`; no rows means `Conflict`)
//! with the work marks they imply, and the outbox rows. Any refusal rolls the whole
//! transaction back.
//!
//! Semantics are those of [`platform::store::MemoryState::apply`] with the schema's model,
//! checked by the conformance suite (kv schema) and a differential test per service. Two
//! differences: outbox ids come from a sequence, so they have gaps and a row becomes visible
//! at its transaction's commit; and an outbox `event_id` used twice is refused (`Fatal`, it is
//! a bug) by the table's unique constraint.
//!
//! **Cancellation.** sqlx's `Pool::begin` is not cancel-safe on Postgres (0.8.6 and 0.9.0):
//! a future dropped while `BEGIN` is in flight returns its connection to the pool inside an
//! open transaction, and the next borrower's statements run in it (they hold its locks,
//! fail with 25P02 after an error, and are lost if nobody commits). A gRPC deadline drops
//! handlers at any await, so [`PgStore`]'s commit runs the whole transaction in a task of its
//! own that the caller's cancellation does not reach, and a connection whose transaction did
//! not end cleanly (begin, commit or rollback failed) is closed, never returned to the pool.
//! `tests/integration/cancellation.rs` reproduces the upstream bug and shows the store immune.

mod error;
mod schema;
pub mod schemas;

use std::{borrow::Cow, marker::PhantomData, str::FromStr, time::Duration};

use async_trait::async_trait;
use platform::ports::{
    Claimed, Cleaned, OutboxMessage, OutboxRow, Platform, Schema, Store, StoreError, Tx,
};
use sqlx::{
    migrate::Migrator,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
    types::Json,
    Connection, Executor, PgConnection, Postgres, Row, Transaction,
};

pub(crate) use error::store_error;
pub use error::ConnectError;
pub use schema::{InvalidSchemaName, SchemaName};

/// The platform migrations (`migrations/platform`), run in every service's schema first.
static PLATFORM_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/platform");

/// A service's [`Schema`] on Postgres: its migrations and the SQL of each write and query.
#[async_trait]
pub trait PgSchema: Schema {
    /// The schema's own migrations (versions 100 and up; the platform's are below).
    fn migrator() -> &'static Migrator;
    /// Runs `write` inside the transaction `db`: `Conflict` when its check fails (no row
    /// inserted or updated), so the whole transaction rolls back.
    async fn write(db: &mut PgConnection, write: &Self::Write) -> Result<(), StoreError>;
    /// Answers `query`.
    async fn query(db: &mut PgConnection, query: &Self::Query) -> Result<Self::Answer, StoreError>;
}

/// The platform's migrations followed by `S`'s, as one history.
fn migrator<S: PgSchema>() -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            PLATFORM_MIGRATOR
                .migrations
                .iter()
                .chain(S::migrator().migrations.iter())
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

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
            pool_connections_max: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The store of one service with schema `S`: its own Postgres schema in a database.
#[derive(Debug)]
pub struct PgStore<S> {
    /// At most `pool_connections_max` connections, each with `search_path` set to `schema`;
    /// callers beyond that wait up to `acquire_timeout`, then get `Unavailable`.
    pool: PgPool,
    schema: SchemaName,
    _schema: PhantomData<fn() -> S>,
}

impl<S> Clone for PgStore<S> {
    fn clone(&self) -> Self {
        PgStore {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
            _schema: PhantomData,
        }
    }
}

impl<S: PgSchema> PgStore<S> {
    /// Connects with [`PgStoreConfig::default`]; see [`PgStore::connect_with`].
    pub async fn connect(database_url: &str, schema: &SchemaName) -> Result<Self, ConnectError> {
        Self::connect_with(database_url, schema, PgStoreConfig::default()).await
    }

    /// Creates `schema` if missing, opens a bounded pool whose connections use it as their
    /// `search_path`, and runs the platform's and `S`'s migrations in it.
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
        migrator::<S>()
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
            _schema: PhantomData,
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
    async fn commit_to_end(&self, tx: Tx<S::Write>) -> Result<(), StoreError> {
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

    async fn transaction_on(
        &self,
        conn: &mut PoolConnection<Postgres>,
        tx: Tx<S::Write>,
    ) -> TxOutcome {
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

    /// The transaction of the module doc, inside `db`.
    async fn apply(
        &self,
        db: &mut Transaction<'_, Postgres>,
        tx: Tx<S::Write>,
    ) -> Result<(), StoreError> {
        for claim in &tx.claims {
            let held: Option<(Option<String>, i64)> = sqlx::query_as(
                "SELECT claim_owner, claim_token FROM work WHERE kind = $1 AND key = $2 FOR UPDATE",
            )
            .bind(&claim.kind)
            .bind(&claim.key)
            .fetch_optional(&mut **db)
            .await
            .map_err(|e| store_error("check claim", e))?;
            let still_held = held.is_some_and(|(owner, token)| {
                owner.as_deref() == Some(claim.owner.as_str()) && token == claim.token
            });
            if !still_held {
                return Err(StoreError::conflict(&claim.kind, &claim.key));
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

        // The schema's writes after the claim and inbox checks, in the model's order.
        for write in &tx.writes {
            S::write(db, write).await?;
        }
        for mark in tx.writes.iter().flat_map(S::work) {
            sqlx::query(
                "INSERT INTO work (kind, key, active) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind, key) DO UPDATE SET active = EXCLUDED.active",
            )
            .bind(&mark.kind)
            .bind(&mark.key)
            .bind(mark.active)
            .execute(&mut **db)
            .await
            .map_err(|e| store_error("mark work", e))?;
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
impl<S: PgSchema> Store<S> for PgStore<S> {
    async fn query(&self, query: S::Query) -> Result<S::Answer, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| store_error("acquire", e))?;
        <S as PgSchema>::query(&mut conn, &query).await
    }

    #[tracing::instrument(skip_all, fields(schema = %self.schema, writes = tx.writes.len(), outbox = tx.outbox.len()))]
    async fn commit(&self, tx: Tx<S::Write>) -> Result<(), StoreError> {
        // The transaction runs to its end in its own task, whatever happens to the caller
        // (see the module doc's "Cancellation").
        let store = self.clone();
        tokio::spawn(async move { store.commit_to_end(tx).await })
            .await
            // The task died (runtime shutting down, a panic): the commit may have happened.
            .map_err(|e| StoreError::Unavailable(format!("commit task ended: {e}")))?
    }
}

#[async_trait]
impl<S: PgSchema> Platform for PgStore<S> {
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        sqlx::query(
            "SELECT id, event_id, topic, key, payload, headers, \
             (extract(epoch FROM created_at) * 1000)::bigint AS created_ms FROM outbox \
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

    async fn consumed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)",
        )
        .bind(consumer)
        .bind(event_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| store_error("inbox lookup", e))
    }

    async fn list_work(&self, kind: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT key FROM work WHERE kind = $1 AND active ORDER BY key LIMIT $2")
            .bind(kind)
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error("list work", e))
    }

    async fn claim_work(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        // One statement, so no transaction can be left open. `held` lists what `owner` held
        // before (from the statement's snapshot); `picked` fills the room left under the limit
        // with items nobody holds or whose holder's liveness lease ran out (SKIP LOCKED passes
        // over items a commit is writing; they are taken next round). The parts are disjoint.
        let mut claimed: Vec<Claimed> = sqlx::query_as::<_, (String, i64)>(
            "WITH held AS ( \
                 SELECT key, claim_token FROM work \
                 WHERE kind = $1 AND active AND claim_owner = $2 ORDER BY key LIMIT $3), \
             picked AS ( \
                 SELECT w.kind, w.key FROM work w \
                 LEFT JOIN leases l ON l.name = 'instance/' || w.claim_owner \
                 WHERE w.kind = $1 AND w.active AND w.claim_owner IS DISTINCT FROM $2 \
                   AND (w.claim_owner IS NULL OR l.owner IS DISTINCT FROM w.claim_owner \
                        OR l.until <= clock_timestamp()) \
                 ORDER BY w.key \
                 LIMIT GREATEST($3 - (SELECT count(*) FROM held), 0) \
                 FOR UPDATE OF w SKIP LOCKED), \
             taken AS ( \
                 UPDATE work w SET claim_owner = $2, claim_token = w.claim_token + 1 \
                 FROM picked WHERE w.kind = picked.kind AND w.key = picked.key \
                 RETURNING w.key, w.claim_token) \
             SELECT key, claim_token FROM held UNION ALL SELECT key, claim_token FROM taken",
        )
        .bind(kind)
        .bind(owner)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error("claim work", e))?
        .into_iter()
        .map(|(key, token)| Claimed { key, token })
        .collect();
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

/// A `LIMIT` parameter: Postgres takes a bigint.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
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
        created_ms: row.try_get("created_ms")?,
    })
}

/// A readiness probe of a PostgreSQL server: one connection at most, opened on first use
/// and again after it broke.
#[derive(Clone)]
pub struct PgProbe {
    pool: PgPool,
}

impl PgProbe {
    /// A probe of the server at `database_url` (nothing is connected yet).
    pub fn new(database_url: &str) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(database_url)?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options);
        Ok(PgProbe { pool })
    }

    /// Whether the server answers a query within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }
}
