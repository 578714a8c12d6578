//! The store port: versioned records, a transactional outbox and an inbox, committed together.
//!
//! A transaction is one value ([`Tx`]): the versions it read (optimistic checks), the records it
//! writes, the events it emits (outbox) and the events it consumed (inbox). It travels to the
//! database as one message, so in the simulation a lost reply is exactly "commit result
//! unknown". Adapters: Postgres (crate `adapters`), in memory ([`crate::store::MemoryStore`]),
//! and the simulation's DB node (crate `sim`).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A record with the version it was stored at (1 for the first write).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    pub version: i64,
    pub body: serde_json::Value,
}

/// An optimistic check: the record at `table/key` must be at `version` (`None`: absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expect {
    pub table: String,
    pub key: String,
    pub version: Option<i64>,
}

/// A write of `body` to `table/key`, bumping its version. `active` records are listed by
/// [`Store::list_active`] (work not finished yet, e.g. an order whose saga still runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Put {
    pub table: String,
    pub key: String,
    pub body: serde_json::Value,
    pub active: bool,
}

/// A fencing check: the record at `table/key` must still be claimed by `owner` with `token`
/// (see [`Store::claim_active`]). A driver that lost its claim to another instance cannot
/// commit any more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectClaim {
    pub table: String,
    pub key: String,
    pub owner: String,
    pub token: i64,
}

/// An active record claimed by one instance: the record and the claim's fencing token.
/// The token changes only when the claim passes to another owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claimed {
    pub key: String,
    pub record: Versioned,
    pub token: i64,
}

/// The name of `owner`'s liveness lease: its claims ([`Store::claim_active`]) are held while
/// this lease runs.
pub fn liveness_lease(owner: &str) -> String {
    format!("instance/{owner}")
}

/// What [`Store::cleanup`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleaned {
    /// Sent outbox rows older than the retention.
    pub outbox_rows: u64,
    /// Inbox marks older than the retention.
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
}

/// A consumed event recorded by `consumer`; committing the same mark twice is
/// [`StoreError::Duplicate`], so the effect happens once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMark {
    pub consumer: String,
    pub event_id: String,
}

/// One atomic unit of work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tx {
    pub expect: Vec<Expect>,
    pub claims: Vec<ExpectClaim>,
    pub puts: Vec<Put>,
    pub outbox: Vec<OutboxMessage>,
    pub inbox: Vec<InboxMark>,
}

impl Tx {
    /// An empty transaction.
    pub fn new() -> Self {
        Tx::default()
    }
    /// Require `table/key` to be at `version` (`None`: absent).
    pub fn expect(mut self, table: &str, key: &str, version: Option<i64>) -> Self {
        self.expect.push(Expect {
            table: table.into(),
            key: key.into(),
            version,
        });
        self
    }
    /// Require `table/key` to be claimed by `owner` with fencing `token`.
    pub fn expect_claim(mut self, table: &str, key: &str, owner: &str, token: i64) -> Self {
        self.claims.push(ExpectClaim {
            table: table.into(),
            key: key.into(),
            owner: owner.into(),
            token,
        });
        self
    }
    /// Write `body` to `table/key`.
    pub fn put(mut self, table: &str, key: &str, body: serde_json::Value, active: bool) -> Self {
        self.puts.push(Put {
            table: table.into(),
            key: key.into(),
            body,
            active,
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
}

/// The database of one service.
#[async_trait]
pub trait Store: Send + Sync {
    /// The record at `table/key`.
    async fn get(&self, table: &str, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Up to `limit` active records of `table`, by key.
    async fn list_active(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError>;
    /// Commits `tx` atomically, or writes nothing.
    async fn commit(&self, tx: Tx) -> Result<(), StoreError>;
    /// Up to `limit` unsent outbox rows, oldest first.
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    /// Marks rows as sent; they are kept (for audit) until [`Store::cleanup`], but no longer
    /// pending.
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// The active records of `table` that `owner` holds (up to `limit`, by key), after taking
    /// over up to `limit` more that nobody holds or whose holder's liveness lease
    /// ([`liveness_lease`]) is not running. A record passed to another owner gets a new
    /// fencing token; one kept keeps it. Claims need no renewal: they last while their owner
    /// keeps its liveness lease, so an instance renews one lease, not every record.
    async fn claim_active(
        &self,
        table: &str,
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
    /// zero retention: every sent row and every mark). The retention must outlast the event log's: a record redelivered
    /// after its mark is gone takes effect again.
    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError>;
}
