//! The event-log port: a Kafka-shaped producer and consumer carrying the seed's settings.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

/// How many replicas must acknowledge a write before the producer is told it succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Acks {
    /// `acks=0`: fire and forget.
    None,
    /// `acks=1`: the partition leader alone.
    Leader,
    /// `acks=all`: every in-sync replica (the seed's setting).
    All,
}

impl Acks {
    /// The value of Kafka's `acks` property.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Producer settings; [`Default`] is the seed's reliable configuration.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Kafka `client.id`.
    pub client_id: String,
    /// Kafka `acks`.
    pub acks: Acks,
    /// Kafka `enable.idempotence`.
    pub enable_idempotence: bool,
    /// Kafka `client.rack` (`msk` / `nsk`).
    pub client_rack: Option<String>,
    /// Kafka `delivery.timeout.ms`: the bound on one `send`, retries included.
    pub delivery_timeout: Duration,
    /// Kafka `request.timeout.ms`: the bound on one produce request.
    pub request_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client_id: "marketplace".into(),
            acks: Acks::All,
            enable_idempotence: true,
            client_rack: None,
            delivery_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(3),
        }
    }
}

/// Consumer settings; [`ConsumerConfig::new`] gives the seed's configuration.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Kafka `client.id`.
    pub client_id: String,
    /// Kafka `group.id`.
    pub group_id: String,
    /// Kafka `client.rack`, for follower fetching from the nearest replica.
    pub client_rack: Option<String>,
    /// Kafka `enable.auto.commit`; the seed keeps it off and commits after the effect.
    pub enable_auto_commit: bool,
    /// Kafka `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Kafka `max.poll.interval.ms`: a member that does not call `poll` for this long leaves
    /// its group (its partitions go to others), and a rebalance waits this long for it.
    pub max_poll_interval: Duration,
}

impl ConsumerConfig {
    /// The seed's consumer settings for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerConfig {
            client_id: "marketplace".into(),
            group_id: group_id.into(),
            client_rack: None,
            enable_auto_commit: false,
            session_timeout: Duration::from_secs(10),
            max_poll_interval: MAX_POLL_INTERVAL_DEFAULT,
        }
    }
}

/// librdkafka's default `max.poll.interval.ms`.
pub const MAX_POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(300);

/// A record handed to a producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducedRecord {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Where an acknowledged record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAck {
    pub partition: i32,
    pub offset: i64,
}

/// A record read by a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl ConsumedRecord {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Errors of the event-log port.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EventLogError {
    /// Fewer in-sync replicas than `min.insync.replicas`: the write was refused.
    #[error("not enough in-sync replicas")]
    NotEnoughReplicas,
    /// The write or read did not complete within its timeout; its outcome is unknown.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The cluster or the partition leader cannot be reached.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A commit from a consumer whose group generation is no longer current.
    #[error("consumer was fenced by a group rebalance")]
    Fenced,
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// Anything else; not worth retrying.
    #[error("event log error: {0}")]
    Fatal(String),
}

impl EventLogError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(
            self,
            EventLogError::Fatal(_) | EventLogError::UnknownTopic(_)
        )
    }
}

/// A producer bound to one configuration.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Sends one record; resolves once it is acknowledged per the producer's `acks`.
    async fn send(&self, record: ProducedRecord) -> Result<RecordAck, EventLogError>;
}

/// A group member that reads records and commits offsets by hand.
#[async_trait]
pub trait Consumer: Send {
    /// Waits up to `timeout` for records from the assigned partitions (may return none).
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, EventLogError>;
    /// Commits, for each partition of `records`, the offset after the last one given.
    async fn commit(&mut self, records: &[ConsumedRecord]) -> Result<(), EventLogError>;
    /// How far behind the log the member is on each partition assigned to it that it has a
    /// position on: its position (the offset after the last record `poll` returned, or where
    /// it starts) against the partition's high watermark, asked of the partition's leader.
    /// Records fetched but not yet returned by `poll` count as not read.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError>;
    /// [`Consumer::lag`] as a query that holds no borrow of the member, so that a consumer
    /// loop can let it run beside its polls: asking each partition's leader takes round trips,
    /// and long ones while a broker is slow. `None`: the member answers only in turn, through
    /// [`Consumer::lag`].
    fn lag_query(&mut self) -> Option<LagQuery> {
        None
    }
}

/// A lag query running apart from its member (see [`Consumer::lag_query`]).
pub type LagQuery = futures::future::BoxFuture<'static, Result<Vec<PartitionLag>, EventLogError>>;

/// A member's place on one partition against the partition's high watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The next offset the member will read.
    pub position: i64,
    pub high_watermark: i64,
}

impl PartitionLag {
    /// Records the member has still to read (never below zero).
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.position).max(0)
    }
}

/// The factory for producers and consumers of one cluster.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// A producer with `config`.
    async fn producer(&self, config: ProducerConfig) -> Result<Arc<dyn Producer>, EventLogError>;
    /// A consumer in `config.group_id` subscribed to `topics`.
    async fn consumer(
        &self,
        config: ConsumerConfig,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, EventLogError>;
}
