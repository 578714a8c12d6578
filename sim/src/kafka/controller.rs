//! The controller node (KRaft's active controller, one node in MSK): broker registration and
//! liveness, the partition metadata (leader, ISR, epochs), leader election, ISR changes, and
//! — hosted here for simplicity — the group coordinator.
//!
//! - A broker that misses heartbeats for `broker_session_timeout_ms` is fenced: it leaves
//!   every ISR (the ISR may become empty) and its partitions elect a new leader.
//! - Eligible leader replicas (KIP-966, on in clusters formatted by Kafka 4.1+, as ours is):
//!   every ISR change goes through [`change_isr`], Kafka's `PartitionChangeBuilder` rules —
//!   while the ISR is under `min.insync.replicas` the replicas that leave it join the ELR
//!   (the high watermark is frozen, so they hold every committed record); at or above it the
//!   ELR is empty. A leader is elected from the live ISR, or, when the ISR is empty, from the
//!   live ELR (which becomes the ISR of one); with both empty, the last known leader when it
//!   returns; else, with `unclean_leader_election`, any live replica; else the partition is
//!   offline (leader `None`).
//! - A broker heartbeating with a new incarnation restarted, and uncleanly (the model's
//!   kills are). As in Kafka, the new incarnation is refused while the old one's session is
//!   valid; once it expired (the broker is fenced), the broker leaves every ISR and ELR and
//!   is unfenced, so it comes back as a follower that must truncate and catch up before its
//!   leader proposes it back into the ISR.
//! - Preferred leaders (`auto.leader.rebalance.enable`): every
//!   `leader_imbalance_check_interval_ms`, the partitions of a broker that leads fewer than
//!   it is preferred for (by more than `leader_imbalance_per_broker_percentage`) move back to
//!   it where it is in the ISR.
//! - Brokers learn the metadata image from their heartbeat replies; leaders change ISRs only
//!   through `AlterPartition`, validated against the leader and partition epochs.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use madsim::time::{self, Instant};

use super::{
    config::KafkaModelConfig,
    disk::{lock, ControllerDisk, Disk},
    group::GroupCoordinator,
    net,
    protocol::{
        AlterPartition, BrokerEndpoint, BrokerHeartbeat, BrokerId, ClusterMetadata,
        ControllerRequest, ControllerResponse, ErrorCode, PartitionState,
    },
};

/// The initial metadata image: every partition led by its preferred replica, full ISR.
pub(crate) fn initial_disk(config: &KafkaModelConfig) -> ControllerDisk {
    let order = config.rack_alternating_brokers();
    let mut disk = ControllerDisk {
        metadata_version: 1,
        ..Default::default()
    };
    for topic in &config.topics {
        let rf = topic.replication_factor.min(order.len()).max(1);
        for p in 0..topic.partitions {
            let start = p as usize % order.len();
            let replicas: Vec<BrokerId> =
                (0..rf).map(|i| order[(start + i) % order.len()]).collect();
            disk.partitions.insert(
                super::protocol::TopicPartition::new(topic.name.clone(), p),
                PartitionState {
                    leader: replicas.first().copied(),
                    leader_epoch: 0,
                    isr: replicas.iter().copied().collect(),
                    elr: Default::default(),
                    last_known_leader: None,
                    partition_epoch: 0,
                    replicas,
                },
            );
        }
    }
    disk
}

/// A broker's session as the controller sees it (volatile).
#[derive(Debug)]
struct Session {
    last_heartbeat: Instant,
}

/// The controller process.
struct Controller {
    config: Arc<KafkaModelConfig>,
    disk: Disk<ControllerDisk>,
    /// Broker sessions; rebuilt after a restart (every broker gets a fresh session timeout).
    sessions: Mutex<BTreeMap<BrokerId, Session>>,
    /// Group membership (volatile; members rejoin after a controller restart).
    groups: Mutex<GroupCoordinator>,
    /// The published image, rebuilt when `metadata_version` moves.
    image: Mutex<Option<Arc<ClusterMetadata>>>,
}

/// Runs the controller until its node dies.
pub(crate) async fn run(config: Arc<KafkaModelConfig>, disk: Disk<ControllerDisk>) {
    let now = Instant::now();
    let sessions = config
        .brokers
        .iter()
        .map(|b| {
            (
                b.id,
                Session {
                    last_heartbeat: now,
                },
            )
        })
        .collect();
    let controller = Arc::new(Controller {
        config: config.clone(),
        disk,
        sessions: Mutex::new(sessions),
        groups: Mutex::new(GroupCoordinator::default()),
        image: Mutex::new(None),
    });
    let ticker = controller.clone();
    madsim::task::spawn(async move {
        loop {
            time::sleep(ticker.config.controller_tick_interval()).await;
            ticker.tick();
        }
    });
    if config.leader_imbalance_check_interval_ms > 0 {
        let rebalancer = controller.clone();
        madsim::task::spawn(async move {
            let every = std::time::Duration::from_millis(
                rebalancer.config.leader_imbalance_check_interval_ms,
            );
            loop {
                time::sleep(every).await;
                rebalancer.rebalance_leaders();
            }
        });
    }
    let addr = config.controller_addr();
    let handler = move |req: ControllerRequest, _from| {
        let controller = controller.clone();
        async move { controller.handle(req) }
    };
    if let Err(e) = net::serve(config.clone(), addr, handler).await {
        tracing::error!(%addr, error = %e, "controller cannot serve");
    }
}

impl Controller {
    fn handle(&self, req: ControllerRequest) -> ControllerResponse {
        match req {
            ControllerRequest::BrokerHeartbeat(hb) => {
                ControllerResponse::BrokerHeartbeat(self.heartbeat(hb))
            }
            ControllerRequest::AlterPartition(alter) => {
                ControllerResponse::AlterPartition(self.alter_partition(alter))
            }
            ControllerRequest::Group(req) => {
                let mut disk = lock(&self.disk);
                let resp = lock(&self.groups).handle(&mut disk, req, Instant::now());
                ControllerResponse::Group(resp)
            }
        }
    }

    fn heartbeat(&self, hb: BrokerHeartbeat) -> Option<Arc<ClusterMetadata>> {
        // Unknown brokers get nothing.
        self.config.broker(hb.broker)?;
        let mut disk = lock(&self.disk);
        let restarted = disk
            .broker_incarnations
            .get(&hb.broker)
            .is_some_and(|p| *p != hb.incarnation);
        if restarted && !disk.fenced.contains(&hb.broker) {
            let session_valid = lock(&self.sessions).get(&hb.broker).is_some_and(|s| {
                Instant::now().duration_since(s.last_heartbeat)
                    <= self.config.broker_session_timeout()
            });
            if session_valid {
                // Kafka's DUPLICATE_BROKER_REGISTRATION: the new incarnation waits until the
                // old one's session expires (and the tick fences it).
                tracing::debug!(
                    broker = hb.broker,
                    "new incarnation refused while the old session is valid"
                );
                return None;
            }
            self.fence(&mut disk, hb.broker);
        }
        disk.broker_incarnations.insert(hb.broker, hb.incarnation);
        if restarted {
            self.unclean_shutdown(&mut disk, hb.broker);
        }
        lock(&self.sessions).insert(
            hb.broker,
            Session {
                last_heartbeat: Instant::now(),
            },
        );
        if disk.fenced.contains(&hb.broker) {
            self.unfence(&mut disk, hb.broker);
        }
        (disk.metadata_version != hb.metadata_version).then(|| self.image(&disk))
    }

    fn alter_partition(&self, req: AlterPartition) -> Result<PartitionState, ErrorCode> {
        let mut disk = lock(&self.disk);
        if disk.fenced.contains(&req.broker) {
            return Err(ErrorCode::StaleBrokerEpoch);
        }
        if disk.broker_incarnations.get(&req.broker) != Some(&req.incarnation) {
            return Err(ErrorCode::StaleBrokerEpoch);
        }
        let fenced = disk.fenced.clone();
        let state = disk
            .partitions
            .get_mut(&req.tp)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if state.leader != Some(req.broker) || state.leader_epoch != req.leader_epoch {
            return Err(ErrorCode::FencedLeaderEpoch);
        }
        if state.partition_epoch != req.partition_epoch {
            return Err(ErrorCode::InvalidUpdateVersion);
        }
        let eligible = req
            .new_isr
            .iter()
            .all(|b| state.replicas.contains(b) && (state.isr.contains(b) || !fenced.contains(b)));
        if !eligible || !req.new_isr.contains(&req.broker) {
            return Err(ErrorCode::IneligibleReplica);
        }
        tracing::info!(tp = %req.tp, old = ?state.isr, new = ?req.new_isr, "ISR changed by leader");
        let min_isr = self.config.min_insync_replicas_of(&req.tp.topic);
        change_isr(state, req.new_isr, min_isr, None);
        state.partition_epoch += 1;
        let state = state.clone();
        disk.metadata_version += 1;
        Ok(state)
    }

    fn tick(&self) {
        let now = Instant::now();
        let session_timeout = self.config.broker_session_timeout();
        let expired: Vec<BrokerId> = lock(&self.sessions)
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_heartbeat) > session_timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut disk = lock(&self.disk);
        for broker in expired {
            if !disk.fenced.contains(&broker) {
                tracing::info!(broker, "broker session expired; fencing it");
                self.fence(&mut disk, broker);
            }
        }
        lock(&self.groups).expire_sessions(&mut disk, now);
    }

    /// Fences `broker`: out of every ISR (into the ELR where the ISR is under min), and a new
    /// leader for every partition it led.
    fn fence(&self, disk: &mut ControllerDisk, broker: BrokerId) {
        disk.fenced.insert(broker);
        self.remove_everywhere(disk, broker, false);
    }

    /// Kafka's `handleBrokerUncleanShutdown`: `broker` came back from an unclean shutdown, so
    /// its log may miss what it had acknowledged: out of every ISR and ELR.
    fn unclean_shutdown(&self, disk: &mut ControllerDisk, broker: BrokerId) {
        self.remove_everywhere(disk, broker, true);
    }

    fn remove_everywhere(
        &self,
        disk: &mut ControllerDisk,
        broker: BrokerId,
        unclean_shutdown: bool,
    ) {
        let fenced = disk.fenced.clone();
        for (tp, state) in disk.partitions.iter_mut() {
            let unclean = self.config.unclean_leader_election_of(&tp.topic);
            let min_isr = self.config.min_insync_replicas_of(&tp.topic);
            let in_isr = state.isr.contains(&broker);
            let in_elr = unclean_shutdown && state.elr.contains(&broker);
            let leads = state.leader == Some(broker);
            if !in_isr && !in_elr && !leads {
                continue;
            }
            let mut isr = state.isr.clone();
            isr.remove(&broker);
            change_isr(state, isr, min_isr, unclean_shutdown.then_some(broker));
            elect(tp, state, &fenced, unclean);
            state.partition_epoch += 1;
        }
        disk.metadata_version += 1;
    }

    /// Kafka's auto leader rebalance: gives each broker led by others on more than the
    /// imbalance share of the partitions it is preferred for those partitions back, where it
    /// is live and in the ISR.
    fn rebalance_leaders(&self) {
        let mut disk = lock(&self.disk);
        let fenced = disk.fenced.clone();
        let share = u64::from(self.config.leader_imbalance_per_broker_percentage);
        let mut moved = false;
        for broker in self.config.brokers.iter().map(|b| b.id) {
            let preferred: Vec<_> = disk
                .partitions
                .iter()
                .filter(|(_, s)| s.replicas.first() == Some(&broker))
                .map(|(tp, _)| tp.clone())
                .collect();
            let elsewhere = preferred
                .iter()
                .filter(|tp| disk.partitions[*tp].leader != Some(broker))
                .count() as u64;
            if preferred.is_empty() || elsewhere * 100 <= share * preferred.len() as u64 {
                continue;
            }
            if fenced.contains(&broker) {
                continue;
            }
            for tp in preferred {
                let Some(state) = disk.partitions.get_mut(&tp) else {
                    continue;
                };
                if state.leader != Some(broker) && state.isr.contains(&broker) {
                    tracing::info!(%tp, from = ?state.leader, to = broker, "preferred leader election");
                    state.leader = Some(broker);
                    state.leader_epoch += 1;
                    state.partition_epoch += 1;
                    moved = true;
                }
            }
        }
        if moved {
            disk.metadata_version += 1;
        }
    }

    /// Unfences `broker` and brings back the offline partitions it can lead.
    fn unfence(&self, disk: &mut ControllerDisk, broker: BrokerId) {
        disk.fenced.remove(&broker);
        let fenced = disk.fenced.clone();
        for (tp, state) in disk.partitions.iter_mut() {
            let unclean = self.config.unclean_leader_election_of(&tp.topic);
            if state.leader.is_none()
                && state.replicas.contains(&broker)
                && elect(tp, state, &fenced, unclean)
            {
                state.partition_epoch += 1;
            }
        }
        disk.metadata_version += 1;
    }

    fn image(&self, disk: &ControllerDisk) -> Arc<ClusterMetadata> {
        let mut cached = lock(&self.image);
        if let Some(image) = cached
            .as_ref()
            .filter(|i| i.version == disk.metadata_version)
        {
            return image.clone();
        }
        let image = Arc::new(ClusterMetadata {
            version: disk.metadata_version,
            brokers: self
                .config
                .brokers
                .iter()
                .map(|b| BrokerEndpoint {
                    id: b.id,
                    name: b.name.clone(),
                    addr: std::net::SocketAddr::new(b.ip, self.config.broker_port),
                    rack: b.rack.clone(),
                })
                .collect(),
            fenced: disk.fenced.clone(),
            controller: self.config.controller_addr(),
            partitions: disk.partitions.clone(),
        });
        *cached = Some(image.clone());
        image
    }
}

/// Kafka 4.4's `PartitionChangeBuilder.maybePopulateTargetElr`: sets the ISR to `new_isr`;
/// at or above `min_isr` (capped at the replica count, as the high watermark's freeze is) the
/// ELR empties, below it the members leaving the ISR join it — except `unclean_shutdown`,
/// which leaves both.
fn change_isr(
    state: &mut PartitionState,
    new_isr: std::collections::BTreeSet<BrokerId>,
    min_isr: usize,
    unclean_shutdown: Option<BrokerId>,
) {
    if new_isr.len() >= min_isr.min(state.replicas.len()) {
        state.elr.clear();
    } else {
        let mut elr: std::collections::BTreeSet<BrokerId> =
            state.elr.union(&state.isr).copied().collect();
        elr.retain(|r| !new_isr.contains(r) && Some(*r) != unclean_shutdown);
        state.elr = elr;
    }
    state.isr = new_isr;
}

/// Kafka 4.4's election (`PartitionChangeBuilder.electAnyLeader`) for `state`: keeps a
/// leader that is live and in the ISR; else the first live replica (in replica order) in the
/// ISR, or — when the ISR is empty — in the ELR (which becomes the ISR of one); else, with
/// both empty, the last known leader if it is live again; else, with `unclean`, any live
/// replica (which becomes the whole ISR). Bumps the leader epoch when the leader changes;
/// returns whether it did.
fn elect(
    tp: &super::protocol::TopicPartition,
    state: &mut PartitionState,
    fenced: &std::collections::BTreeSet<BrokerId>,
    unclean: bool,
) -> bool {
    let live = |r: &BrokerId| !fenced.contains(r);
    let valid = |s: &PartitionState, r: &BrokerId| {
        live(r) && (s.isr.contains(r) || (s.isr.is_empty() && s.elr.contains(r)))
    };
    let previous = state.leader;
    let leader = if previous.is_some_and(|l| valid(state, &l)) {
        previous
    } else if let Some(r) = state.replicas.iter().copied().find(|r| valid(state, r)) {
        if !state.isr.contains(&r) {
            tracing::info!(%tp, leader = r, elr = ?state.elr, "leader elected from the eligible leader replicas");
            state.elr.remove(&r);
            state.isr = [r].into_iter().collect();
        }
        Some(r)
    } else if state.isr.is_empty()
        && state.elr.is_empty()
        && state.last_known_leader.is_some_and(|l| live(&l))
    {
        let r = state.last_known_leader;
        tracing::warn!(%tp, leader = ?r, "the last known leader is back: elected");
        state.isr = r.into_iter().collect();
        r
    } else if unclean {
        let r = state.replicas.iter().copied().find(live);
        if let Some(r) = r {
            tracing::warn!(%tp, leader = r, "unclean leader election");
            state.isr = [r].into_iter().collect();
            state.elr.clear();
        }
        r
    } else {
        None
    };
    // Kafka's maybeUpdateLastKnownLeader: remembered when the ISR first empties, forgotten
    // once a leader is back.
    if leader.is_some() {
        state.last_known_leader = None;
    } else if state.isr.is_empty() && state.last_known_leader.is_none() {
        state.last_known_leader = previous;
    }
    if leader == state.leader {
        return false;
    }
    state.leader_epoch += 1;
    match leader {
        Some(l) => {
            tracing::info!(%tp, leader = l, epoch = state.leader_epoch, isr = ?state.isr, "leader elected")
        }
        None => tracing::warn!(%tp, isr = ?state.isr, "partition offline: no eligible leader"),
    }
    state.leader = leader;
    true
}
