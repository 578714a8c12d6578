//! A broker node: it registers and heartbeats with the controller (learning the metadata
//! image from the replies), takes the leader or follower role per partition from that image,
//! serves produce and fetch requests as a leader ([`leader`]), and replicates as a follower by
//! fetching from leaders ([`follower`]).
//!
//! A restarted broker serves nothing until its first heartbeat reply: it must learn the
//! current leaders before it can act, and its logs are truncated to each leader's log by the
//! follower fetch's divergence check before it can rejoin any ISR.

mod follower;
mod leader;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use madsim::time::{self, Instant};

use super::{
    config::KafkaModelConfig,
    disk::{lock, BrokerDisk, Disk},
    net,
    protocol::{
        BrokerHeartbeat, BrokerId, BrokerRequest, BrokerResponse, ClusterMetadata,
        ControllerRequest, ControllerResponse, ErrorCode, ProducerIdentity, TopicPartition,
    },
    signal::Signal,
};

/// Counters a test or checker can read to see what a broker did (not part of Kafka's state).
#[derive(Debug, Default)]
pub struct BrokerCounters {
    /// Produce requests handled as leader.
    pub produce_requests: AtomicU64,
    /// Retried batches an idempotent producer sent again and the leader dropped.
    pub duplicate_batches: AtomicU64,
    /// Batches refused because their producer epoch is older than the log has seen.
    pub fenced_batches: AtomicU64,
    /// `acks=all` requests answered `NOT_ENOUGH_REPLICAS_AFTER_APPEND`.
    pub not_enough_replicas_after_append: AtomicU64,
    /// Consumer fetch requests this broker answered with records, as leader or follower.
    pub consumer_fetches: AtomicU64,
    /// Of those, the ones it served as a follower (follower fetching).
    pub consumer_fetches_as_follower: AtomicU64,
}

impl BrokerCounters {
    pub fn produce_requests(&self) -> u64 {
        self.produce_requests.load(Ordering::Relaxed)
    }
    pub fn duplicate_batches(&self) -> u64 {
        self.duplicate_batches.load(Ordering::Relaxed)
    }
    pub fn fenced_batches(&self) -> u64 {
        self.fenced_batches.load(Ordering::Relaxed)
    }
    pub fn not_enough_replicas_after_append(&self) -> u64 {
        self.not_enough_replicas_after_append
            .load(Ordering::Relaxed)
    }
    pub fn consumer_fetches(&self) -> u64 {
        self.consumer_fetches.load(Ordering::Relaxed)
    }
    pub fn consumer_fetches_as_follower(&self) -> u64 {
        self.consumer_fetches_as_follower.load(Ordering::Relaxed)
    }
}

/// The leader's view of one follower.
#[derive(Debug, Clone)]
struct FollowerProgress {
    /// The follower's log end offset as of its last fetch in this leader epoch.
    log_end_offset: Option<i64>,
    /// When the follower was last caught up to the leader's log end (Kafka's
    /// `lastCaughtUpTimeMs`).
    last_caught_up: Instant,
    /// The leader's log end and the time at the previous fetch from this follower.
    previous_fetch: Option<(i64, Instant)>,
    /// Whether the follower fetched since the leader's last ISR check. Kafka adds a follower
    /// back to the ISR when one of its fetches shows it caught up; the periodic check adds
    /// back only a follower that fetched since the previous check, never one whose last
    /// (caught-up) fetch is old news, e.g. one cut off right after it.
    fetched_since_isr_check: bool,
}

/// A partition this broker leads.
#[derive(Debug)]
struct Leadership {
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<BrokerId>,
    /// The ISR the controller committed.
    isr: BTreeSet<BrokerId>,
    /// An ISR proposed to the controller and not yet answered. Until it is, the high
    /// watermark waits for the union of both (KIP-497's "maximal ISR").
    isr_proposed: Option<BTreeSet<BrokerId>>,
    followers: BTreeMap<BrokerId, FollowerProgress>,
}

impl Leadership {
    /// The replicas the high watermark must wait for.
    fn maximal_isr(&self) -> BTreeSet<BrokerId> {
        let mut isr = self.isr.clone();
        if let Some(proposed) = &self.isr_proposed {
            isr.extend(proposed.iter().copied());
        }
        isr
    }
}

/// A partition this broker follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Followership {
    leader: BrokerId,
    leader_epoch: i32,
}

/// The broker's volatile state (lost on a crash).
#[derive(Debug, Default)]
struct BrokerState {
    /// The newest image learned from the controller; `None` until the first heartbeat reply.
    metadata: Option<Arc<ClusterMetadata>>,
    leading: BTreeMap<TopicPartition, Leadership>,
    following: BTreeMap<TopicPartition, Followership>,
}

/// One incarnation of a broker process.
pub(crate) struct Broker {
    id: BrokerId,
    incarnation: u64,
    config: Arc<KafkaModelConfig>,
    disk: Disk<BrokerDisk>,
    /// Volatile state; locked before `disk` when both are needed, never across an await.
    state: Mutex<BrokerState>,
    /// Bumped on every change a waiting request may care about (appends, high watermarks,
    /// roles): `acks=all` produce requests, long-polling fetches and the replica fetchers
    /// wait on it instead of polling.
    progress: Signal,
    counters: Arc<BrokerCounters>,
}

/// Runs broker `id` until its node dies.
pub(crate) async fn run(
    id: BrokerId,
    config: Arc<KafkaModelConfig>,
    disk: Disk<BrokerDisk>,
    counters: Arc<BrokerCounters>,
) {
    let incarnation = {
        let mut d = lock(&disk);
        d.incarnation += 1;
        d.incarnation
    };
    let Some(addr) = config.broker_addr(id) else {
        tracing::error!(broker = id, "broker missing from the model config");
        return;
    };
    let broker = Arc::new(Broker {
        id,
        incarnation,
        config: config.clone(),
        disk,
        state: Mutex::new(BrokerState::default()),
        progress: Signal::default(),
        counters,
    });
    tracing::info!(broker = id, incarnation, "broker starting");

    let heartbeat = broker.clone();
    madsim::task::spawn(async move { heartbeat.heartbeat_loop().await });
    for source in config.brokers.iter().map(|b| b.id).filter(|b| *b != id) {
        let fetcher = broker.clone();
        madsim::task::spawn(async move { fetcher.replica_fetcher(source).await });
    }
    let isr = broker.clone();
    madsim::task::spawn(async move { isr.isr_maintenance_loop().await });

    let handler = move |req: BrokerRequest, _from| {
        let broker = broker.clone();
        async move { broker.handle(req).await }
    };
    if let Err(e) = net::serve(config.clone(), addr, handler).await {
        tracing::error!(%addr, error = %e, "broker cannot serve");
    }
}

impl Broker {
    fn state(&self) -> MutexGuard<'_, BrokerState> {
        lock(&self.state)
    }

    fn disk(&self) -> MutexGuard<'_, BrokerDisk> {
        lock(&self.disk)
    }

    /// Wakes every request waiting on this broker's progress.
    fn notify_progress(&self) {
        self.progress.bump();
    }

    async fn handle(&self, req: BrokerRequest) -> BrokerResponse {
        match req {
            BrokerRequest::Metadata => BrokerResponse::Metadata(
                self.state()
                    .metadata
                    .clone()
                    .ok_or(ErrorCode::BrokerNotAvailable),
            ),
            BrokerRequest::InitProducerId => {
                let mut disk = self.disk();
                let producer_id = (i64::from(self.id) << 40) | disk.producer_id_next;
                disk.producer_id_next += 1;
                BrokerResponse::InitProducerId(Ok(ProducerIdentity {
                    producer_id,
                    producer_epoch: 0,
                }))
            }
            BrokerRequest::Produce(req) => BrokerResponse::Produce(self.produce(req).await),
            BrokerRequest::Fetch(req) => BrokerResponse::Fetch(self.fetch(req).await),
            BrokerRequest::ReplicaFetch(req) => {
                BrokerResponse::ReplicaFetch(self.serve_replica_fetch(req).await)
            }
        }
    }

    async fn heartbeat_loop(&self) {
        let controller = self.config.controller_addr();
        loop {
            let known = self.state().metadata.as_ref().map_or(0, |m| m.version);
            let req = ControllerRequest::BrokerHeartbeat(BrokerHeartbeat {
                broker: self.id,
                incarnation: self.incarnation,
                metadata_version: known,
            });
            let reply: std::io::Result<ControllerResponse> =
                net::call(controller, req, self.config.controller_request_timeout()).await;
            match reply {
                Ok(ControllerResponse::BrokerHeartbeat(Some(image))) => self.apply_metadata(image),
                Ok(_) => {}
                Err(e) => tracing::debug!(broker = self.id, error = %e, "heartbeat failed"),
            }
            time::sleep(self.config.broker_heartbeat_interval()).await;
        }
    }

    /// Adopts a newer metadata image: becomes leader or follower of each partition it hosts.
    fn apply_metadata(&self, image: Arc<ClusterMetadata>) {
        let mut state = self.state();
        if state
            .metadata
            .as_ref()
            .is_some_and(|m| m.version >= image.version)
        {
            return;
        }
        let now = Instant::now();
        let mut disk = self.disk();
        for (tp, p) in &image.partitions {
            if !p.replicas.contains(&self.id) {
                continue;
            }
            disk.logs.entry(tp.clone()).or_default();
            match p.leader {
                Some(l) if l == self.id => {
                    state.following.remove(tp);
                    let current = state.leading.get(tp).map(|l| l.leader_epoch);
                    if current == Some(p.leader_epoch) {
                        if let Some(lead) = state.leading.get_mut(tp) {
                            if p.partition_epoch > lead.partition_epoch {
                                lead.isr = p.isr.clone();
                                lead.partition_epoch = p.partition_epoch;
                                lead.isr_proposed = None;
                            }
                        }
                    } else {
                        tracing::info!(broker = self.id, %tp, epoch = p.leader_epoch, isr = ?p.isr, "becoming leader");
                        let followers = p
                            .replicas
                            .iter()
                            .filter(|r| **r != self.id)
                            .map(|r| {
                                (
                                    *r,
                                    FollowerProgress {
                                        log_end_offset: None,
                                        last_caught_up: now,
                                        previous_fetch: None,
                                        fetched_since_isr_check: false,
                                    },
                                )
                            })
                            .collect();
                        state.leading.insert(
                            tp.clone(),
                            Leadership {
                                leader_epoch: p.leader_epoch,
                                partition_epoch: p.partition_epoch,
                                replicas: p.replicas.clone(),
                                isr: p.isr.clone(),
                                isr_proposed: None,
                                followers,
                            },
                        );
                    }
                }
                Some(l) => {
                    if state.leading.remove(tp).is_some() {
                        tracing::info!(broker = self.id, %tp, leader = l, "no longer leader");
                    }
                    state.following.insert(
                        tp.clone(),
                        Followership {
                            leader: l,
                            leader_epoch: p.leader_epoch,
                        },
                    );
                }
                None => {
                    state.leading.remove(tp);
                    state.following.remove(tp);
                }
            }
        }
        // A leader may advance its high watermark once the ISR shrank.
        let tps: Vec<TopicPartition> = state.leading.keys().cloned().collect();
        for tp in tps {
            self.update_high_watermark(&state, &mut disk, &tp);
        }
        state.metadata = Some(image);
        drop(disk);
        drop(state);
        self.notify_progress();
    }
}

impl Broker {
    /// Recomputes a leader's high watermark: the smallest log end offset across the maximal
    /// ISR (followers that have not fetched in this epoch hold it where it is).
    fn update_high_watermark(
        &self,
        state: &BrokerState,
        disk: &mut BrokerDisk,
        tp: &TopicPartition,
    ) -> bool {
        let (me, min_insync_replicas) = (self.id, self.config.min_insync_replicas_of(&tp.topic));
        let Some(lead) = state.leading.get(tp) else {
            return false;
        };
        // Kafka 3.7+ (`Partition.maybeIncrementLeaderHW`): no advance while the committed ISR is
        // under the effective minimum (`min.insync.replicas`, at most the replica count). Records
        // only the leader holds stay invisible to consumers, and `acks=all` requests appended
        // before the shrink wait (and time out) instead of being committed on too few replicas.
        if lead.isr.len() < min_insync_replicas.min(lead.replicas.len()) {
            return false;
        }
        let Some(log) = disk.logs.get_mut(tp) else {
            return false;
        };
        let mut hw = log.log_end_offset();
        for member in lead.maximal_isr() {
            if member == me {
                continue;
            }
            match lead.followers.get(&member).and_then(|f| f.log_end_offset) {
                Some(leo) => hw = hw.min(leo),
                None => return false,
            }
        }
        let before = log.high_watermark();
        log.advance_high_watermark(hw);
        log.high_watermark() != before
    }
}
