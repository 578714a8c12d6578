//! The durable state of each model node — its "disk". The cluster handle owns it outside the
//! node's tasks, so a killed node restarts with exactly what it had persisted.
//!
//! A process crash (`kill`) keeps the page cache, so every write survives it. A power loss
//! of a broker's host also loses what the operating system had not yet written back: the
//! partition logs lose their newest records ([`BrokerDisk::lose_page_cache`]), as Kafka,
//! which acknowledges from the page cache and relies on replication for durability, does.
//! Metadata, group offsets and the producer-id counter count as written at once (KRaft
//! fsyncs its metadata log; the model keeps offsets on the controller).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use madsim::time::Instant;

use super::{
    log::PartitionLog,
    protocol::{BrokerId, PartitionState, TopicPartition},
};

/// A node's disk: shared between the cluster handle (checkers) and the node's tasks.
pub type Disk<T> = Arc<Mutex<T>>;

/// Locks a model mutex; a poisoned lock (a panicking task) still holds consistent data
/// because every critical section is a plain in-memory update.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a broker persists.
#[derive(Debug, Default)]
pub struct BrokerDisk {
    /// Bumped on every start; the controller treats a new value as a restart.
    pub incarnation: u64,
    /// Next producer id this broker hands out (ids are `broker id << 40 | counter`).
    pub producer_id_next: i64,
    /// This broker's replica of each partition it hosts.
    pub logs: BTreeMap<TopicPartition, PartitionLog>,
}

impl BrokerDisk {
    /// The host lost power: every log drops the records written after `last_writeback`.
    /// Returns how many records were lost in all.
    pub fn lose_page_cache(&mut self, last_writeback: Instant) -> usize {
        self.logs
            .values_mut()
            .map(|log| log.lose_unwritten(last_writeback))
            .sum()
    }
}

/// What the controller persists (KRaft's metadata log, and the group coordinator's
/// `__consumer_offsets`, which the model keeps on the controller).
#[derive(Debug, Default)]
pub struct ControllerDisk {
    /// Bumped on every change of the image below.
    pub metadata_version: u64,
    pub partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Brokers whose session expired and which have not heartbeated since.
    pub fenced: BTreeSet<BrokerId>,
    /// The last incarnation each broker registered with.
    pub broker_incarnations: BTreeMap<BrokerId, u64>,
    pub groups: BTreeMap<String, GroupRecord>,
    /// Source of unique member ids across coordinator restarts.
    pub member_id_next: u64,
}

/// A consumer group's durable record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRecord {
    /// The current generation; never reused, so a stale member's commit stays fenced even
    /// after a coordinator restart.
    pub generation: i32,
    /// Committed offsets: the next offset to consume.
    pub offsets: BTreeMap<TopicPartition, i64>,
}
