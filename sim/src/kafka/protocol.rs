//! The messages the model's nodes exchange over the simulated network (through
//! [`crate::rpc`]), shaped after Kafka's own requests, and the error codes they carry.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    sync::Arc,
};

use platform::ports::Acks;

use super::log::Record;

/// Kafka `broker.id`.
pub type BrokerId = i32;

/// A topic partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The controller's record of one partition (KRaft's `PartitionRecord`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// `None` while the partition is offline (no eligible replica alive).
    pub leader: Option<BrokerId>,
    /// Bumped on every leader change; fences stale leaders and drives follower truncation.
    pub leader_epoch: i32,
    /// The in-sync replicas, the leader included; may be empty while the partition is
    /// offline.
    pub isr: BTreeSet<BrokerId>,
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was under
    /// `min.insync.replicas` (so the high watermark was frozen and they hold every committed
    /// record), minus brokers that since shut down uncleanly. Electable when the ISR is empty.
    pub elr: BTreeSet<BrokerId>,
    /// The leader when the ISR became empty, elected again when it comes back if the ISR
    /// and ELR are still empty (Kafka's last-known-leader balanced recovery).
    pub last_known_leader: Option<BrokerId>,
    /// Bumped on every change of this record (ISR or leader); fences stale ISR updates.
    pub partition_epoch: i32,
}

/// A broker as clients and other brokers address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub id: BrokerId,
    pub name: String,
    pub addr: SocketAddr,
    pub rack: String,
}

/// The cluster metadata image the controller publishes and brokers serve to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Bumped on every change; brokers and clients keep the newest image they saw.
    pub version: u64,
    pub brokers: Vec<BrokerEndpoint>,
    /// Brokers the controller fenced (session expired); they lead nothing.
    pub fenced: BTreeSet<BrokerId>,
    pub controller: SocketAddr,
    pub partitions: BTreeMap<TopicPartition, PartitionState>,
}

impl ClusterMetadata {
    /// Partitions of `topic`, if it exists.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        let n = self
            .partitions
            .keys()
            .filter(|tp| tp.topic == topic)
            .count();
        (n > 0).then_some(n as i32)
    }

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerEndpoint> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// The address of `tp`'s leader, if it has one.
    pub fn leader_addr(&self, tp: &TopicPartition) -> Option<(BrokerId, SocketAddr)> {
        let leader = self.partitions.get(tp)?.leader?;
        Some((leader, self.broker(leader)?.addr))
    }
}

/// Kafka's error codes, as far as the model uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorCode {
    #[error("NOT_LEADER_OR_FOLLOWER")]
    NotLeaderOrFollower,
    #[error("FENCED_LEADER_EPOCH")]
    FencedLeaderEpoch,
    #[error("NOT_ENOUGH_REPLICAS")]
    NotEnoughReplicas,
    #[error("NOT_ENOUGH_REPLICAS_AFTER_APPEND")]
    NotEnoughReplicasAfterAppend,
    #[error("REQUEST_TIMED_OUT")]
    RequestTimedOut,
    #[error("UNKNOWN_TOPIC_OR_PARTITION")]
    UnknownTopicOrPartition,
    #[error("OUT_OF_ORDER_SEQUENCE_NUMBER")]
    OutOfOrderSequence,
    #[error("INVALID_PRODUCER_EPOCH")]
    InvalidProducerEpoch,
    /// A follower asked for an offset past its log end; the consumer goes back to the leader.
    #[error("OFFSET_OUT_OF_RANGE")]
    OffsetOutOfRange,
    #[error("BROKER_NOT_AVAILABLE")]
    BrokerNotAvailable,
    #[error("STALE_BROKER_EPOCH")]
    StaleBrokerEpoch,
    #[error("INVALID_UPDATE_VERSION")]
    InvalidUpdateVersion,
    #[error("INELIGIBLE_REPLICA")]
    IneligibleReplica,
    #[error("ILLEGAL_GENERATION")]
    IllegalGeneration,
    #[error("UNKNOWN_MEMBER_ID")]
    UnknownMemberId,
    #[error("REBALANCE_IN_PROGRESS")]
    RebalanceInProgress,
}

// ---------------------------------------------------------------- broker requests

/// A request to a broker (port 9092).
#[derive(Debug)]
pub enum BrokerRequest {
    /// Clients ask any broker for its metadata image.
    Metadata,
    /// Kafka `InitProducerId` (non-transactional): a fresh producer id.
    InitProducerId,
    Produce(ProduceRequest),
    /// A consumer's fetch (only below the high watermark), from a leader or, with follower
    /// fetching, from the follower the leader picked.
    Fetch(FetchRequest),
    /// A follower's fetch (up to the log end; carries the follower's progress).
    ReplicaFetch(ReplicaFetchRequest),
}

/// A broker's reply.
#[derive(Debug)]
pub enum BrokerResponse {
    Metadata(Result<Arc<ClusterMetadata>, ErrorCode>),
    InitProducerId(Result<ProducerIdentity, ErrorCode>),
    Produce(Result<i64, ErrorCode>),
    Fetch(Vec<FetchPartitionResponse>),
    ReplicaFetch(Vec<ReplicaFetchPartitionResponse>),
}

/// An idempotent producer's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// What an idempotent producer stamps on a batch so the leader can drop a retried duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub sequence: i32,
}

/// A one-record produce request (the port sends record by record).
#[derive(Debug)]
pub struct ProduceRequest {
    pub tp: TopicPartition,
    pub acks: Acks,
    /// Kafka's produce `timeout_ms`: how long the leader waits for the ISR with `acks=all`.
    pub timeout_ms: u64,
    pub stamp: Option<ProducerStamp>,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// A consumer fetch for several partitions of one broker.
#[derive(Debug)]
pub struct FetchRequest {
    pub partitions: Vec<FetchPartition>,
    /// How long the leader may hold the request while no partition has records.
    pub wait_max_ms: u64,
    pub records_max: usize,
}

/// One partition of a consumer fetch.
#[derive(Debug)]
pub struct FetchPartition {
    pub tp: TopicPartition,
    pub fetch_offset: i64,
    /// The leader epoch of the record before `fetch_offset`, when the consumer read it: the
    /// leader checks it as librdkafka's position validation (KIP-320) would.
    pub last_fetched_epoch: Option<i32>,
    pub target: FetchTarget,
}

/// Which replica a consumer addresses for a partition (KIP-392).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchTarget {
    /// The leader. With the consumer's `client.rack`, the leader may answer with a
    /// preferred read replica in that rack instead of records.
    Leader { client_rack: Option<String> },
    /// A follower the leader named as preferred read replica; it serves records below the
    /// high watermark it knows, while it is in the ISR.
    Follower,
}

#[derive(Debug)]
pub struct FetchPartitionResponse {
    pub tp: TopicPartition,
    pub result: Result<FetchedRecords, FetchError>,
}

#[derive(Debug)]
pub struct FetchedRecords {
    pub records: Vec<Record>,
    /// Set by a leader (with no records) when the consumer should read from this follower.
    pub preferred_read_replica: Option<BrokerId>,
    /// The partition's high watermark as the answering broker knows it.
    pub high_watermark: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The broker does not lead the partition (any more).
    Code(ErrorCode),
    /// The fetch offset is past the log end and the consumer knows no epoch to validate it
    /// with (a committed offset): it resets by `auto.offset.reset`, to the earliest offset.
    OffsetOutOfRange { high_watermark: i64 },
    /// The leader's log diverged from what the consumer read (KIP-320: the epoch of the
    /// consumer's last record ends at `end_offset`, below its position, after a truncation):
    /// the consumer seeks back to `end_offset`, as librdkafka does on log truncation.
    Diverging {
        end_offset: i64,
        high_watermark: i64,
    },
}

/// A follower's fetch from one leader, for every partition it follows there.
#[derive(Debug)]
pub struct ReplicaFetchRequest {
    pub replica: BrokerId,
    pub wait_max_ms: u64,
    pub records_max: usize,
    pub partitions: Vec<ReplicaFetchPartition>,
}

#[derive(Debug)]
pub struct ReplicaFetchPartition {
    pub tp: TopicPartition,
    /// The leader epoch the follower believes current.
    pub leader_epoch: i32,
    /// The follower's log end offset.
    pub fetch_offset: i64,
    /// The leader epoch of the follower's last record (KIP-320 divergence check).
    pub last_fetched_epoch: Option<i32>,
    /// The high watermark the follower knows; a leader with a higher one answers at once.
    pub high_watermark: i64,
}

#[derive(Debug)]
pub struct ReplicaFetchPartitionResponse {
    pub tp: TopicPartition,
    pub result: Result<ReplicaFetched, ErrorCode>,
}

#[derive(Debug)]
pub enum ReplicaFetched {
    Records {
        records: Vec<Record>,
        high_watermark: i64,
    },
    /// The follower's log diverges from the leader's after `end_offset`, the end of the
    /// leader's epoch `epoch` (the largest epoch not above the follower's last one).
    Diverging { epoch: Option<i32>, end_offset: i64 },
}

// ---------------------------------------------------------------- controller requests

/// A request to the controller (port 9093). The controller also hosts the group coordinator.
#[derive(Debug)]
pub enum ControllerRequest {
    BrokerHeartbeat(BrokerHeartbeat),
    AlterPartition(AlterPartition),
    Group(GroupRequest),
}

#[derive(Debug)]
pub enum ControllerResponse {
    /// The metadata image, if newer than the one the broker reported.
    BrokerHeartbeat(Option<Arc<ClusterMetadata>>),
    AlterPartition(Result<PartitionState, ErrorCode>),
    Group(GroupResponse),
}

/// A broker's heartbeat, which also registers it (KRaft's `BrokerHeartbeat` +
/// `BrokerRegistration`).
#[derive(Debug)]
pub struct BrokerHeartbeat {
    pub broker: BrokerId,
    /// Changes on every start of the broker process; a new one means the broker restarted.
    pub incarnation: u64,
    pub metadata_version: u64,
}

/// A leader's ISR change proposal (KIP-497 `AlterPartition`).
#[derive(Debug)]
pub struct AlterPartition {
    pub broker: BrokerId,
    pub incarnation: u64,
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: BTreeSet<BrokerId>,
}

/// Group coordinator requests.
#[derive(Debug)]
pub enum GroupRequest {
    Join {
        group: String,
        /// `None` for a new member.
        member_id: Option<String>,
        client_id: String,
        topics: Vec<String>,
        session_timeout_ms: u64,
        /// `max.poll.interval.ms`: how long a rebalance waits for the member to rejoin.
        rebalance_timeout_ms: u64,
    },
    Heartbeat {
        group: String,
        member_id: String,
        generation: i32,
    },
    Leave {
        group: String,
        member_id: String,
    },
    OffsetCommit {
        group: String,
        member_id: String,
        generation: i32,
        offsets: BTreeMap<TopicPartition, i64>,
    },
    OffsetFetch {
        group: String,
        partitions: Vec<TopicPartition>,
    },
}

#[derive(Debug)]
pub enum GroupResponse {
    Join(Result<JoinResult, ErrorCode>),
    Heartbeat(Result<(), ErrorCode>),
    Leave,
    OffsetCommit(Result<(), ErrorCode>),
    OffsetFetch(BTreeMap<TopicPartition, i64>),
}

/// A member's place in the group after a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub member_id: String,
    pub generation: i32,
    pub assignment: Vec<TopicPartition>,
    /// The rebalance waits for other members to rejoin: join again shortly.
    pub pending: bool,
}
