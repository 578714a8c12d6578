//! The controller node (KRaft's active controller, one node in MSK): broker registration and
//! liveness, the partition metadata (leader, ISR, epochs), leader election, ISR changes, and
//! — hosted here for simplicity — the group coordinator.
//!
//! - A broker that misses heartbeats for `broker_session_timeout_ms` is fenced: it leaves
//!   every ISR (unless it is the last member, as KRaft keeps it) and its partitions elect a new
//!   leader from the ISR. With no eligible replica a partition goes offline (leader `None`)
//!   unless `unclean_leader_election` lets any live replica take over with an ISR of itself.
//! - A broker heartbeating with a new incarnation restarted: it is fenced and unfenced at
//!   once, so it comes back as a follower that must truncate and catch up before its leader
//!   proposes it back into the ISR.
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
        let previous = disk.broker_incarnations.insert(hb.broker, hb.incarnation);
        if previous.is_some_and(|p| p != hb.incarnation) && !disk.fenced.contains(&hb.broker) {
            tracing::info!(broker = hb.broker, "broker restarted within its session");
            self.fence(&mut disk, hb.broker);
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
        state.isr = req.new_isr;
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

    /// Fences `broker`: out of every ISR it is not the last member of, and a new leader for
    /// every partition it led.
    fn fence(&self, disk: &mut ControllerDisk, broker: BrokerId) {
        disk.fenced.insert(broker);
        let fenced = disk.fenced.clone();
        let unclean = self.config.unclean_leader_election;
        for (tp, state) in disk.partitions.iter_mut() {
            let in_isr = state.isr.contains(&broker);
            let leads = state.leader == Some(broker);
            if !in_isr && !leads {
                continue;
            }
            if in_isr && state.isr.len() > 1 {
                state.isr.remove(&broker);
            }
            if leads {
                elect(tp, state, &fenced, unclean);
            }
            state.partition_epoch += 1;
        }
        disk.metadata_version += 1;
    }

    /// Unfences `broker` and brings back the offline partitions it can lead.
    fn unfence(&self, disk: &mut ControllerDisk, broker: BrokerId) {
        disk.fenced.remove(&broker);
        let fenced = disk.fenced.clone();
        let unclean = self.config.unclean_leader_election;
        for (tp, state) in disk.partitions.iter_mut() {
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

/// Picks a leader for `state` among live replicas: from the ISR (in replica order), or with
/// `unclean` any live replica (which becomes the whole ISR). Bumps the leader epoch when the
/// leader changes; returns whether it did.
fn elect(
    tp: &super::protocol::TopicPartition,
    state: &mut PartitionState,
    fenced: &std::collections::BTreeSet<BrokerId>,
    unclean: bool,
) -> bool {
    let clean = state
        .replicas
        .iter()
        .copied()
        .find(|r| state.isr.contains(r) && !fenced.contains(r));
    let leader = match clean {
        Some(r) => Some(r),
        None if unclean => {
            let r = state.replicas.iter().copied().find(|r| !fenced.contains(r));
            if let Some(r) = r {
                tracing::warn!(%tp, leader = r, "unclean leader election");
                state.isr = [r].into_iter().collect();
            }
            r
        }
        None => None,
    };
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
