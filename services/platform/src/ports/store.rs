//! The store port: each service's typed tables, plus what every store shares — a transactional
//! outbox, an inbox, work items claimed by one instance at a time, named leases and cleanup —
//! committed together.
//!
//! A service declares its [`Schema`]: its own write enum, query enum and answer type, and an
//! in-memory model that defines what they mean. A transaction is one value ([`Tx`]): the
//! service's writes (each carries its own optimistic check, e.g. an expected version), the
//! claims it must still hold, the events it emits (outbox) and the events it consumed (inbox).
//! It travels to the database as one message, so in the simulation a lost reply is exactly
//! "commit result unknown".
//!
//! Adapters: Postgres (crate `adapters`: the platform tables plus typed SQL per service, held
//! to the model by a differential test per service), in memory ([`crate::store::MemoryStore`]),
//! and the simulation's DB node (crate `sim`, hosting the same model).

use std::{fmt::Debug, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A service's typed store: its writes, its queries and the model that defines them.
pub trait Schema: Send + Sync + 'static {
    /// One write: an insert or an update with the check it needs (e.g. an expected version).
    type Write: Clone + Debug + Send + Sync + 'static;
    /// One read.
    type Query: Clone + Debug + Send + Sync + 'static;
    /// A read's answer.
    type Answer: Clone + Debug + PartialEq + Send + Sync + 'static;
    /// The service's tables in memory: the meaning of every write and query.
    type Model: Clone + Debug + Default + Send + Sync + 'static;

    /// Applies `write` to `model`, or changes nothing and says why (`Conflict` when its check
    /// fails, `Fatal` for a write that breaks a constraint). The writes of one transaction
    /// apply in order, each seeing the ones before, as statements do in SQL.
    fn apply(model: &mut Self::Model, write: Self::Write) -> Result<(), StoreError>;
    /// Answers `query`.
    fn query(model: &Self::Model, query: &Self::Query) -> Self::Answer;
    /// The work items `write` starts or finishes (e.g. an order whose saga still runs), kept
    /// in the platform's work table for [`Platform::claim_work`].
    fn work(write: &Self::Write) -> Vec<WorkMark> {
        let _ = write;
        Vec::new()
    }
}

/// A row with the version it was stored at (1 for the first write).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub version: i64,
    pub value: T,
}

/// A work item started (`active`) or finished, of kind `kind` (e.g. `orders`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkMark {
    pub kind: String,
    pub key: String,
    pub active: bool,
}

/// A fencing check: the work item `kind/key` must still be claimed by `owner` with `token`
/// (see [`Platform::claim_work`]). A driver that lost its claim to another instance cannot
/// commit any more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectClaim {
    pub kind: String,
    pub key: String,
    pub owner: String,
    pub token: i64,
}

/// An active work item claimed by one instance, with the claim's fencing token. The token
/// changes only when the claim passes to another owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    pub key: String,
    pub token: i64,
}

/// The name of `owner`'s liveness lease: its claims ([`Platform::claim_work`]) are held while
/// this lease runs.
pub fn liveness_lease(owner: &str) -> String {
    format!("instance/{owner}")
}

/// What [`Platform::cleanup`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleaned {
    /// Sent outbox rows at least the retention old.
    pub outbox_rows: u64,
    /// Inbox marks at least the retention old.
    pub inbox_marks: u64,
}

/// An event to publish, written in the same transaction as the state change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Unique id of the event; consumers deduplicate on it.
    pub event_id: String,
    pub topic: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub headers: Vec<(String, String)>,
}

/// A pending outbox row, in commit order (`id` ascending).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub message: OutboxMessage,
    /// When the row was committed, ms since the epoch by the store's clock (0 when
    /// unknown).
    #[serde(default)]
    pub created_ms: i64,
}

/// A consumed event recorded by `consumer`; committing the same mark twice is
/// [`StoreError::Duplicate`], so the effect happens once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMark {
    pub consumer: String,
    pub event_id: String,
}

/// One atomic unit of work of a service whose writes are `W`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tx<W> {
    pub writes: Vec<W>,
    pub claims: Vec<ExpectClaim>,
    pub outbox: Vec<OutboxMessage>,
    pub inbox: Vec<InboxMark>,
}

impl<W> Default for Tx<W> {
    fn default() -> Self {
        Tx {
            writes: Vec::new(),
            claims: Vec::new(),
            outbox: Vec::new(),
            inbox: Vec::new(),
        }
    }
}

impl<W> Tx<W> {
    /// An empty transaction.
    pub fn new() -> Self {
        Tx::default()
    }
    /// Add a write of the service.
    pub fn write(mut self, write: W) -> Self {
        self.writes.push(write);
        self
    }
    /// Require `kind/key` to be claimed by `owner` with fencing `token`.
    pub fn expect_claim(mut self, kind: &str, key: &str, owner: &str, token: i64) -> Self {
        self.claims.push(ExpectClaim {
            kind: kind.into(),
            key: key.into(),
            owner: owner.into(),
            token,
        });
        self
    }
    /// Emit `message` through the outbox.
    pub fn emit(mut self, message: OutboxMessage) -> Self {
        self.outbox.push(message);
        self
    }
    /// Record that `consumer` processed `event_id`.
    pub fn consumed(mut self, consumer: &str, event_id: &str) -> Self {
        self.inbox.push(InboxMark {
            consumer: consumer.into(),
            event_id: event_id.into(),
        });
        self
    }
}

/// Errors of the store port.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreError {
    /// An optimistic check failed: someone else wrote first. Nothing was written.
    #[error("conflict on {table}/{key}")]
    Conflict { table: String, key: String },
    /// An inbox mark was already present: the event was processed before. Nothing was written.
    #[error("event {event_id} already processed by {consumer}")]
    Duplicate { consumer: String, event_id: String },
    /// The database could not be reached, or the reply was lost: the commit may or may not
    /// have happened. Callers re-read before deciding.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; retrying will not help.
    #[error("store error: {0}")]
    Fatal(String),
}

impl StoreError {
    /// Whether retrying later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// A conflict on `table/key`.
    pub fn conflict(table: &str, key: &str) -> Self {
        StoreError::Conflict {
            table: table.into(),
            key: key.into(),
        }
    }
}

/// What every service's store shares, whatever its schema: the outbox, work claims, leases
/// and cleanup. The outbox relay and the claim helpers need only this.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Up to `limit` unsent outbox rows, oldest first.
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    /// Marks rows as sent; they are kept until [`Platform::cleanup`], but no longer pending.
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// Whether `consumer`'s inbox holds the mark of `event_id`: the event took effect. A
    /// consumer asks before an effect that is slow or calls out, so a redelivered event costs
    /// one lookup (the mark committed with the effect stays the guarantee).
    async fn consumed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError>;

    /// Up to `limit` active work items of `kind`, by key, whoever holds them (the mutant that
    /// works without claims; checkers).
    async fn list_work(&self, kind: &str, limit: usize) -> Result<Vec<String>, StoreError>;

    /// The active work items of `kind` that `owner` holds (up to `limit`, by key), and, while
    /// that leaves room under `limit`, items it takes over that nobody holds or whose
    /// holder's liveness lease ([`liveness_lease`]) is not running: at most `limit` in all,
    /// so an instance never hoards more than it works on. A list of exactly `limit` items may
    /// leave out some the owner holds. An item passed to another owner gets a new
    /// fencing token; one kept keeps it. Claims need no renewal: they last while their owner
    /// keeps its liveness lease, so an instance renews one lease, not every item.
    async fn claim_work(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Takes or renews the lease `name` (a job only one instance may run at a time, such as
    /// the outbox relay) for `owner`, for `lease` from now: its fencing token if `owner`
    /// holds it now, `None` while another owner's lease runs. The token changes only when
    /// the lease passes to another owner.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError>;

    /// Removes outbox rows sent and inbox marks recorded `retention` ago or earlier (with a
    /// zero retention: every sent row and every mark). The retention must outlast the event
    /// log's: a record redelivered after its mark is gone takes effect again.
    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError>;
}

/// The database of one service with schema `S`.
#[async_trait]
pub trait Store<S: Schema>: Platform {
    /// Answers `query`.
    async fn query(&self, query: S::Query) -> Result<S::Answer, StoreError>;
    /// Commits `tx` atomically, or writes nothing.
    async fn commit(&self, tx: Tx<S::Write>) -> Result<(), StoreError>;
}
