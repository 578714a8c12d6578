//! The Kafka model: brokers, a controller and clients on simulated nodes, close enough to
//! Kafka that the marketplace's messaging guarantees can be tested against it under faults.
//!
//! | node               | ip          | rack | port | runs                                     |
//! |--------------------|-------------|------|------|------------------------------------------|
//! | `msk-1`            | 10.1.1.1    | msk  | 9092 | broker 1                                 |
//! | `msk-2`            | 10.1.1.2    | msk  | 9092 | broker 2                                 |
//! | `nsk-1`            | 10.2.1.1    | nsk  | 9092 | broker 3                                 |
//! | `kafka-controller` | 10.1.1.10   | msk  | 9093 | controller + group coordinator           |
//!
//! How it works:
//! - **Metadata** lives on the controller ([`controller`]); brokers heartbeat to it and learn
//!   the image (leaders, ISRs, epochs, fenced brokers) from the replies. Clients ask the
//!   brokers for metadata (every broker at once, keeping the newest image) and refresh after
//!   `NOT_LEADER_OR_FOLLOWER` or a connection error.
//! - **Replication** is pull, as in Kafka: followers fetch from the leader
//!   ([`broker`]'s follower side); the fetch offset tells the leader how far each follower got,
//!   and the high watermark is the smallest log end across the ISR — and, as in Kafka 3.7+,
//!   frozen while the ISR is under `min.insync.replicas` (capped at the replica count), so
//!   records only the leader holds stay invisible. `acks=all` is answered only once the high
//!   watermark passed the record; below `min.insync.replicas` the leader refuses with
//!   `NOT_ENOUGH_REPLICAS`. Records carry the leader epoch that wrote them, and a
//!   follower truncates where its log diverges from the leader's (KIP-320), so a restarted
//!   leader drops what it never replicated.
//! - **ISR and ELR** ([`controller`]): the controller drops fenced brokers (session expired)
//!   from every ISR — the ISR may become empty — and keeps Kafka 4.4's eligible leader
//!   replicas (KIP-966): replicas that left an ISR under `min.insync.replicas` (the frozen
//!   high watermark means they hold every committed record) may lead when the ISR is empty;
//!   a broker back from an unclean shutdown (every model kill or power loss) leaves the ISR and
//!   the ELR; with both empty the last known leader is elected when it returns, or, with the
//!   unclean switch, any live replica. A restarted broker is refused while its old session is
//!   valid. Leaders drop followers that lag more than `replica_lag_time_max_ms` and add back
//!   those that caught up, through `AlterPartition`. As in Kafka's `Replica.isCaughtUp`, a
//!   follower holding the leader's whole log stays in sync however long ago it fetched: on an
//!   idle partition only the controller's fencing (broker session) removes a silent follower.
//!   Every `leader_imbalance_check_interval_ms` leadership moves back to preferred replicas
//!   that are in the ISR (`auto.leader.rebalance.enable`).
//! - **Settings**: per topic, `min.insync.replicas` and unclean election may be the topic's
//!   own ([`TopicSpec`]), as Kafka's topic configs; otherwise `min.insync.replicas`, unclean
//!   election, broker heartbeat and session,
//!   `replica.lag.time.max.ms` and the leader rebalance come from `kafka-cluster.properties`,
//!   the file the local cluster's nodes are configured from, so both time out alike (a third
//!   of Kafka's default broker session, heartbeat and ISR lag).
//! - **Consumer groups** are coordinated on the controller node ([`group`]): the classic
//!   protocol with eager assignors as librdkafka speaks it — a rebalance completes only once
//!   every member revoked its partitions at its application's next poll and rejoined (the
//!   JoinGroup barrier), or the rebalance timeout (`max.poll.interval.ms`) evicted it;
//!   a member whose application stops polling for `max.poll.interval.ms` leaves by itself —
//!   range assignment, session expiry, generation-fenced commits, offsets on the
//!   controller's disk. A consumer sends the leader epoch of the last record it read with
//!   each fetch and the leader validates it as librdkafka's KIP-320 position validation does:
//!   after a truncation that replaced records the consumer had read, it seeks back to where
//!   that epoch ends on the leader; a position past the log end with no epoch to check (a
//!   committed offset) resets to the earliest offset (`auto.offset.reset=earliest`).
//! - **Follower fetching** (KIP-392): a consumer with `client_rack` asks the leader, which names
//!   the in-sync follower of that rack holding the fetch offset (Kafka's
//!   `RackAwareReplicaSelector`) unless it is in that rack itself; the consumer then reads
//!   from that follower, below the high watermark the follower knows, for
//!   `metadata_max_age_ms`, and goes back to the leader when the follower fails it
//!   (unreachable, out of the ISR, behind its position). [`BrokerCounters`] count the consumer
//!   fetches each broker served.
//! - **Cross-region latency** ([`net`]): every message between MSK (10.1/16) and NSK (10.2/16)
//!   nodes takes `cross_region_latency_ms` one way (25 ms by default).
//! - **Idempotent producers** stamp batches with producer id, epoch and sequence; after a send
//!   with an unknown outcome the producer bumps its epoch (KIP-360) and the leader fences
//!   requests of an older epoch (`INVALID_PRODUCER_EPOCH`). An `acks=all` request whose ISR
//!   shrank below `min.insync.replicas` after the append waits (the high watermark is
//!   frozen) until the ISR is back or the request times out; a retry is dropped as a
//!   duplicate. `NOT_ENOUGH_REPLICAS_AFTER_APPEND` remains only for a watermark that moved in
//!   the instant before a shrink. The leader checks sequences as Kafka 4.4's
//!   `ProducerAppendInfo` does (a producer it holds nothing of is accepted at any sequence);
//!   `OUT_OF_ORDER_SEQUENCE_NUMBER` — a leader that lost records the producer had
//!   acknowledged — is fatal to the producer as in librdkafka (every later send fails with
//!   `Fatal`, and its owner makes a new one, as the outbox relay does), and
//!   `INVALID_PRODUCER_EPOCH` fails its send.
//! - **Disks**: each node's durable state is an `Arc<Mutex<…>>` held by [`KafkaCluster`]
//!   outside the node, so kill + restart keeps exactly what was persisted. Appends are not
//!   fsynced, as in Kafka: a process kill keeps them (the page cache survives), a power loss
//!   ([`KafkaCluster::power_off`]) drops what the host had not written back yet, so an
//!   acknowledged write is only as durable as the set of in-sync replicas that hold it.
//!
//! Deliberate differences from Kafka, and why none can turn a checker's verdict from what
//! production would give:
//! - **The group coordinator** lives on the controller node with always-durable offsets;
//!   Kafka's is the leader of a `__consumer_offsets` partition (RF 3, min ISR 2) that moves
//!   with its broker, and commits fail below min ISR. Both make a commit fail or wait; the
//!   inbox treats a failed commit as not committed (the records are read again and deduplicated
//!   by their event id), so where the coordinator lives changes only when a re-read happens.
//!   Killing or cutting off the controller node exercises the coordinator's loss. On Kafka a
//!   group cannot form or rebalance while its `__consumer_offsets` partition is under min ISR
//!   (the broker-fault suite's lossy-topic scenario picks a group its surviving leader
//!   coordinates for that reason); the model's groups can, so its consumers may go on where
//!   production's wait for the heal — and every checker judges after the heal.
//! - **One batch in flight** per partition per producer (librdkafka pipelines up to 5 with
//!   idempotence): per-key order and once-ness are what the checkers look at, and librdkafka
//!   keeps both across its pipeline (in-order sequence numbers, retries of the head first), so
//!   the pipeline only makes the model slower (see below).
//! - **Follower fetching** stops as soon as the follower's metadata says it left the ISR;
//!   Kafka keeps serving until the consumer's metadata ages out. Either way a follower serves
//!   only below the high watermark it knows, which is at most the leader's, so a consumer
//!   never sees an uncommitted record; the model only moves consumers to the leader sooner.
//! - **`InitProducerId` always succeeds** on a live broker (a refused or lost reply is a
//!   transport error, retried until the delivery timeout, as librdkafka retries it).
//! - **`UNKNOWN_PRODUCER_ID`** never happens: Kafka 4.4 accepts a producer it holds no state
//!   of at any sequence, as the model does.
//! - **The last known leader** is elected only once it is live; Kafka names it leader at once
//!   and the partition is as unavailable until it returns.
//!
//! Other simplifications: one controller (no KRaft quorum) that also hosts
//! every group coordinator; single-record batches; one in-flight batch per partition per
//! producer; producer ids allocated by brokers, epochs bumped by the producer alone; no
//! retention (topic configs such as `retention.ms` from `topics.tsv` are not modelled: a
//! seed lasts minutes, the shortest retention is days), compaction or transactions. The serving
//! side applies both directions of the cross-region delay (a task cannot learn its own node's
//! IP from madsim), so a reply still "on the wire" is lost if the server node dies.
//! Topics are fixed at start and their replicas placed by a rack-alternating rotation (so
//! leaders go 1, 3, 2, …); Kafka's placement of a new topic varies. One batch in flight per
//! partition makes the model's producer far slower than librdkafka's pipelining (about 25 s of
//! simulated time for 200 `acks=all` sends to one partition, against under 2 s on the local
//! cluster). A power loss drops every page written since the host's last writeback; Linux
//! writes back only pages dirty for 30 s, so it can lose more. Below `min.insync.replicas`
//! the model's producer reports `NotEnoughReplicas` at once, while librdkafka retries it until
//! `delivery.timeout.ms` and the rdkafka adapter reports `Timeout`.

mod broker;
mod client;
mod config;
mod controller;
mod disk;
mod group;
mod log;
mod net;
mod protocol;
mod signal;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock},
};

use madsim::{net::NetSim, runtime::Handle, task::NodeId, time::Instant};
use platform::ports::{Acks, ConsumedRecord, EventLog};

pub use self::{
    broker::BrokerCounters,
    client::{AcknowledgedWrite, ModelConsumer, ModelEventLog, ModelProducer},
    config::{BrokerSpec, KafkaModelConfig, TopicSpec},
    log::Record,
    protocol::{BrokerId, PartitionState, ProducerStamp, TopicPartition},
};
use self::{
    client::AckLedger,
    disk::{lock, BrokerDisk, ControllerDisk, Disk},
};
pub use crate::topology::{region_of, Region};

/// A simulated node of the model, as the fault injector addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelNode {
    pub name: String,
    pub ip: IpAddr,
    pub rack: String,
    pub id: NodeId,
}

/// One replica's log, as a checker reads it from the node's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSnapshot {
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub records: Vec<Record>,
}

struct BrokerHandle {
    spec: BrokerSpec,
    node: ModelNode,
    /// The broker's disk, shared with its node's tasks; outlives every incarnation.
    disk: Disk<BrokerDisk>,
    /// Shared with the broker's tasks; survives restarts (it counts over the whole run).
    counters: Arc<BrokerCounters>,
}

/// A running model cluster: node handles for the fault injector, the event log for services,
/// and read access to every node's disk for checkers.
pub struct KafkaCluster {
    config: Arc<KafkaModelConfig>,
    brokers: Vec<BrokerHandle>,
    controller: ModelNode,
    /// The controller's disk, shared with its node's tasks; outlives every incarnation.
    controller_disk: Disk<ControllerDisk>,
    /// Every acknowledged write, appended by the producers this cluster's event log creates.
    ledger: AckLedger,
    /// When the cluster started: the hosts' page-cache writebacks tick from here.
    started: Instant,
}

impl KafkaCluster {
    /// Creates the controller and broker nodes and starts them. Call from inside a madsim
    /// runtime. Restart a node with `Handle::restart` (after `kill` or not): it comes back
    /// with its disk.
    pub fn start(config: KafkaModelConfig) -> KafkaCluster {
        let handle = Handle::current();
        let config = Arc::new(config);

        let controller_disk: Disk<ControllerDisk> =
            Arc::new(Mutex::new(controller::initial_disk(&config)));
        let controller = {
            let (run_config, disk) = (config.clone(), controller_disk.clone());
            let node_id = Arc::new(OnceLock::new());
            let id_cell = node_id.clone();
            let node = handle
                .create_node()
                .name(config.controller_name.clone())
                .ip(config.controller_ip)
                .init(move || {
                    let config = &run_config;
                    let (config, disk, id) = (config.clone(), disk.clone(), id_cell.clone());
                    async move {
                        release_addresses(&id);
                        controller::run(config, disk).await
                    }
                })
                .build();
            let _ = node_id.set(node.id());
            ModelNode {
                name: config.controller_name.clone(),
                ip: config.controller_ip,
                rack: config.controller_rack.clone(),
                id: node.id(),
            }
        };

        let brokers = config
            .brokers
            .iter()
            .map(|spec| {
                let disk: Disk<BrokerDisk> = Arc::default();
                let counters = Arc::new(BrokerCounters::default());
                let node_id = Arc::new(OnceLock::new());
                let node = {
                    let (config, disk, counters, id_cell) = (
                        config.clone(),
                        disk.clone(),
                        counters.clone(),
                        node_id.clone(),
                    );
                    let broker_id = spec.id;
                    handle
                        .create_node()
                        .name(spec.name.clone())
                        .ip(spec.ip)
                        .init(move || {
                            let (config, disk, counters, id) = (
                                config.clone(),
                                disk.clone(),
                                counters.clone(),
                                id_cell.clone(),
                            );
                            async move {
                                release_addresses(&id);
                                broker::run(broker_id, config, disk, counters).await
                            }
                        })
                        .build()
                };
                let _ = node_id.set(node.id());
                BrokerHandle {
                    spec: spec.clone(),
                    node: ModelNode {
                        name: spec.name.clone(),
                        ip: spec.ip,
                        rack: spec.rack.clone(),
                        id: node.id(),
                    },
                    disk,
                    counters,
                }
            })
            .collect();

        KafkaCluster {
            config,
            brokers,
            controller,
            controller_disk,
            ledger: Arc::default(),
            started: Instant::now(),
        }
    }

    /// The time of the hosts' latest page-cache writeback: records written after it are
    /// only in memory. Writebacks happen every `page_cache_writeback_interval_ms` from the
    /// cluster's start.
    pub fn last_writeback(&self) -> Instant {
        let interval = self.config.page_cache_writeback_interval();
        let ticks = self.started.elapsed().as_nanos() / interval.as_nanos();
        self.started + interval * u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// The host of broker node `name` loses power: kills the node (restart it with
    /// `Handle::restart`) and drops from its logs every record written since its host's last
    /// page-cache writeback (every `page_cache_writeback_interval_ms` from the cluster's
    /// start). Returns how many records were lost, or `None` for an unknown name.
    pub fn power_off(&self, name: &str) -> Option<usize> {
        let broker = self.brokers.iter().find(|b| b.spec.name == name)?;
        Handle::current().kill(broker.node.id);
        let lost = lock(&broker.disk).lose_page_cache(self.last_writeback());
        tracing::info!(
            broker = name,
            lost,
            "power lost; unwritten page cache dropped"
        );
        Some(lost)
    }

    pub fn config(&self) -> &KafkaModelConfig {
        &self.config
    }

    /// The broker nodes, in configuration order.
    pub fn broker_nodes(&self) -> Vec<ModelNode> {
        self.brokers.iter().map(|b| b.node.clone()).collect()
    }

    /// The broker node named `name` (`msk-1`).
    pub fn broker_node(&self, name: &str) -> Option<ModelNode> {
        self.brokers
            .iter()
            .find(|b| b.spec.name == name)
            .map(|b| b.node.clone())
    }

    pub fn controller_node(&self) -> ModelNode {
        self.controller.clone()
    }

    /// The event log services use; works from any simulated node.
    pub fn event_log(&self) -> Arc<dyn EventLog> {
        Arc::new(ModelEventLog::new(self.config.clone(), self.ledger.clone()))
    }

    /// What a broker did (produce requests, dropped duplicates).
    pub fn broker_counters(&self, name: &str) -> Option<Arc<BrokerCounters>> {
        self.brokers
            .iter()
            .find(|b| b.spec.name == name)
            .map(|b| b.counters.clone())
    }

    /// The controller's record of a partition (leader, ISR, epochs).
    pub fn partition_state(&self, topic: &str, partition: i32) -> Option<PartitionState> {
        lock(&self.controller_disk)
            .partitions
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// The node currently leading a partition, per the controller.
    pub fn leader_node(&self, topic: &str, partition: i32) -> Option<ModelNode> {
        let leader = self.partition_state(topic, partition)?.leader?;
        self.brokers
            .iter()
            .find(|b| b.spec.id == leader)
            .map(|b| b.node.clone())
    }

    /// The committed offsets of `group`, from the coordinator's disk.
    pub fn committed_offsets(&self, group: &str) -> Vec<(TopicPartition, i64)> {
        lock(&self.controller_disk)
            .groups
            .get(group)
            .map(|g| g.offsets.iter().map(|(tp, o)| (tp.clone(), *o)).collect())
            .unwrap_or_default()
    }

    /// The current generation of `group`.
    pub fn group_generation(&self, group: &str) -> i32 {
        lock(&self.controller_disk)
            .groups
            .get(group)
            .map_or(0, |g| g.generation)
    }

    /// The brokers the controller has fenced (session expired, no heartbeat since).
    pub fn fenced_brokers(&self) -> std::collections::BTreeSet<BrokerId> {
        lock(&self.controller_disk).fenced.clone()
    }

    /// Every partition of every topic, per the controller.
    pub fn partition_states(&self) -> Vec<(TopicPartition, PartitionState)> {
        lock(&self.controller_disk)
            .partitions
            .iter()
            .map(|(tp, s)| (tp.clone(), s.clone()))
            .collect()
    }

    /// `(partition, state)` of every partition of `topic`, per the controller.
    fn topic_partitions(&self, topic: &str) -> Vec<(i32, PartitionState)> {
        lock(&self.controller_disk)
            .partitions
            .iter()
            .filter(|(tp, _)| tp.topic == topic)
            .map(|(tp, s)| (tp.partition, s.clone()))
            .collect()
    }

    /// Broker `name`'s replica of a partition, read from its disk.
    pub fn replica(&self, name: &str, topic: &str, partition: i32) -> Option<ReplicaSnapshot> {
        let broker = self.brokers.iter().find(|b| b.spec.name == name)?;
        let disk = lock(&broker.disk);
        let log = disk.logs.get(&TopicPartition::new(topic, partition))?;
        Some(ReplicaSnapshot {
            log_end_offset: log.log_end_offset(),
            high_watermark: log.high_watermark(),
            records: log.records().to_vec(),
        })
    }

    /// Per partition of `topic`, the committed records: those below the high watermark on the
    /// current leader (or, while the partition is offline, on the ISR, ELR or last known
    /// leader replica with the highest high watermark).
    pub fn log_snapshot(&self, topic: &str) -> Vec<Vec<ConsumedRecord>> {
        let partitions = self.topic_partitions(topic);
        partitions
            .into_iter()
            .map(|(partition, state)| {
                let candidates: Vec<BrokerId> = match state.leader {
                    Some(l) => vec![l],
                    None => state
                        .isr
                        .iter()
                        .chain(&state.elr)
                        .chain(&state.last_known_leader)
                        .copied()
                        .collect(),
                };
                let best = candidates
                    .iter()
                    .filter_map(|id| self.brokers.iter().find(|b| b.spec.id == *id))
                    .filter_map(|b| self.replica(&b.spec.name, topic, partition))
                    .max_by_key(|r| r.high_watermark);
                best.map(|r| {
                    r.records
                        .into_iter()
                        .take(r.high_watermark as usize)
                        .map(|rec| ConsumedRecord {
                            topic: topic.to_owned(),
                            partition,
                            offset: rec.offset,
                            key: rec.key,
                            payload: rec.payload,
                            headers: rec.headers,
                        })
                        .collect()
                })
                .unwrap_or_default()
            })
            .collect()
    }

    /// Every write the model acknowledged to a producer (`acks=1` or `acks=all`), in
    /// acknowledgement order.
    pub fn acknowledged_writes(&self) -> Vec<AcknowledgedWrite> {
        lock(&self.ledger).clone()
    }

    /// Acknowledged writes with `acks` that are not at their acknowledged offset in
    /// [`Self::log_snapshot`]. Meaningful once the cluster has healed (a new leader's high
    /// watermark may briefly lag its log).
    pub fn lost_acknowledged_writes(&self, acks: Acks) -> Vec<AcknowledgedWrite> {
        let mut snapshots: std::collections::BTreeMap<String, Vec<Vec<ConsumedRecord>>> =
            Default::default();
        self.acknowledged_writes()
            .into_iter()
            .filter(|w| w.acks == acks)
            .filter(|w| {
                let snapshot = snapshots
                    .entry(w.topic.clone())
                    .or_insert_with(|| self.log_snapshot(&w.topic));
                let found = snapshot
                    .get(w.partition as usize)
                    .and_then(|p| p.get(w.offset as usize));
                !matches!(found, Some(r) if r.key == w.key && r.payload == w.payload)
            })
            .collect()
    }

    /// ISR members whose log differs from the leader's below the leader's high watermark
    /// (an ISR member must hold every committed record). Empty when replication is sound.
    pub fn replica_divergence(&self, topic: &str) -> Vec<String> {
        let partitions = self.topic_partitions(topic);
        let name_of = |id: BrokerId| {
            self.brokers
                .iter()
                .find(|b| b.spec.id == id)
                .map(|b| b.spec.name.clone())
        };
        let mut problems = Vec::new();
        for (partition, state) in partitions {
            let Some(leader) = state.leader.and_then(name_of) else {
                continue;
            };
            let Some(lead) = self.replica(&leader, topic, partition) else {
                continue;
            };
            let hw = lead.high_watermark as usize;
            for member in state.isr.iter().filter_map(|id| name_of(*id)) {
                if member == leader {
                    continue;
                }
                let log = self
                    .replica(&member, topic, partition)
                    .map(|r| r.records)
                    .unwrap_or_default();
                let theirs = log.get(..hw.min(log.len())).unwrap_or_default();
                if theirs != &lead.records[..hw] {
                    problems.push(format!(
                        "{topic}-{partition}: ISR member {member} differs from leader {leader} below high watermark {hw}"
                    ));
                }
            }
        }
        problems
    }
}

/// Frees the addresses a node held before a restart that was not preceded by a kill, so the
/// new incarnation can bind them again.
fn release_addresses(node: &OnceLock<NodeId>) {
    if let Some(id) = node.get() {
        NetSim::current().reset_node(*id);
    }
}
