//! The consumer: a group member whose membership a background task keeps alive (join,
//! heartbeat every third of the session timeout, leave when the consumer is dropped), and
//! whose `poll` fetches the assigned partitions from their leaders, below the
//! high watermark, starting from the group's committed offsets (or the earliest offset). With
//! `client_rack`, a leader may name a follower in that rack to read from instead (follower
//! fetching); the consumer reads there for `metadata_max_age_ms` and falls back to the leader
//! (for as long again) when that follower fails it.
//!
//! A rebalance goes as librdkafka's eager protocol takes it: the background task learns of
//! it from a heartbeat; the application's next `poll` revokes every partition (drops every
//! position and anything fetched), and only then does the member rejoin; a join the
//! coordinator answers "pending" is repeated until every member rejoined (see
//! `group.rs`). A consumer whose application does not call `poll` for `max_poll_interval`
//! leaves the group from its background task, as librdkafka's does, and joins as a new
//! member at its next poll.
//!
//! Commits carry the member's current generation, as librdkafka's do: a member the
//! coordinator evicted, or that has not yet learned of a rebalance, gets
//! [`EventLogError::Fenced`]. Like Kafka's, the coordinator does not check that the member
//! still owns the partitions it commits, so a member that rejoined may commit offsets of
//! records it polled in the previous generation (it processed them, so nothing is skipped;
//! another member may read them again). With `enable_auto_commit` the consumer commits
//! what it returns at poll time, before the caller processed it (the mutant the checkers must
//! catch).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use async_trait::async_trait;
use futures::future::join_all;
use madsim::time::{self, Instant};
use platform::ports::{
    ConsumedRecord, Consumer, ConsumerConfig, EventLogError, LagQuery, PartitionLag,
};

use super::{call_broker, transport_error, MetadataCache};
use crate::kafka::{
    config::KafkaModelConfig,
    disk::lock,
    net,
    protocol::{
        BrokerId, BrokerRequest, BrokerResponse, ClusterMetadata, ControllerRequest,
        ControllerResponse, ErrorCode, FetchError, FetchPartition, FetchRequest, FetchTarget,
        GroupRequest, GroupResponse, JoinResult, TopicPartition,
    },
    signal::Signal,
};

/// Pause after a failed fetch or coordinator request inside one poll.
const POLL_BACKOFF_MS: u64 = 100;
/// Shortest heartbeat interval, whatever the session timeout.
const HEARTBEAT_INTERVAL_MIN_MS: u64 = 100;

/// Where a member stands in the rebalance protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Not in the group with an assignment: the membership task (re)joins.
    #[default]
    Revoked,
    /// In the group, owning `assignment`.
    Stable,
    /// A rebalance is under way (or the member was evicted): the next `poll` revokes the
    /// assignment, then the membership task rejoins.
    RevokeRequested,
}

/// The member's place in its group, as the membership task last learned it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Membership {
    member_id: Option<String>,
    generation: i32,
    assignment: Vec<TopicPartition>,
    phase: Phase,
}

/// Membership shared by a consumer and its membership task.
#[derive(Debug, Default)]
struct SharedMembership {
    /// Written by the membership task and by `poll` (revocation), read by `poll` and
    /// `commit`; never held across an await.
    current: Mutex<Membership>,
    /// When the application last returned from `poll`; `None` while it is inside `poll` (or
    /// never called it), as librdkafka counts `max.poll.interval.ms`.
    last_poll: Mutex<Option<Instant>>,
    /// Bumped whenever `current` changes.
    changed: Signal,
}

/// Marks the application inside `poll` until dropped.
struct InPoll<'a>(&'a SharedMembership);

impl<'a> InPoll<'a> {
    fn enter(shared: &'a SharedMembership) -> Self {
        *lock(&shared.last_poll) = None;
        InPoll(shared)
    }
}

impl Drop for InPoll<'_> {
    fn drop(&mut self) {
        *lock(&self.0.last_poll) = Some(Instant::now());
    }
}

/// A consumer of the model.
pub struct ModelConsumer {
    model: Arc<KafkaModelConfig>,
    config: ConsumerConfig,
    metadata: Arc<MetadataCache>,
    /// Membership kept current by the background membership task, which holds only a weak
    /// reference: dropping the consumer makes the task leave the group and stop.
    membership: Arc<SharedMembership>,
    /// Next offset to read per assigned partition, for `positions_generation`.
    positions: BTreeMap<TopicPartition, i64>,
    /// The leader epoch of the last record read per partition (none after a reset or a
    /// committed offset), sent with each fetch for the leader to validate the position.
    last_epochs: BTreeMap<TopicPartition, i32>,
    /// The generation whose assignment `positions` covers.
    positions_generation: Option<i32>,
    /// Follower fetching: the replica a partition's leader named for this consumer's rack,
    /// read from until the instant given (`metadata_max_age_ms`), then the leader is asked again.
    read_replicas: BTreeMap<TopicPartition, (BrokerId, Instant)>,
    /// Partitions read from the leader, without asking for a replica in the consumer's rack,
    /// until the instant given, because the preferred replica failed (unreachable, not in the
    /// ISR, or behind the consumer's position).
    leader_only: BTreeMap<TopicPartition, Instant>,
}

impl ModelConsumer {
    /// A consumer of `topics`; its membership task runs on the calling node.
    pub(crate) fn new(
        model: Arc<KafkaModelConfig>,
        config: ConsumerConfig,
        topics: Vec<String>,
    ) -> Self {
        let membership = Arc::new(SharedMembership::default());
        madsim::task::spawn(membership_loop(
            model.clone(),
            config.clone(),
            topics,
            Arc::downgrade(&membership),
        ));
        ModelConsumer {
            metadata: Arc::new(MetadataCache::new(
                model.clone(),
                config.client_rack.clone(),
            )),
            model,
            config,
            membership,
            positions: BTreeMap::new(),
            last_epochs: BTreeMap::new(),
            positions_generation: None,
            read_replicas: BTreeMap::new(),
            leader_only: BTreeMap::new(),
        }
    }

    async fn coordinator(&self, req: GroupRequest) -> Result<GroupResponse, EventLogError> {
        let reply: std::io::Result<ControllerResponse> = net::call(
            self.model.controller_addr(),
            ControllerRequest::Group(req),
            self.model.client_request_timeout(),
        )
        .await;
        match reply {
            Ok(ControllerResponse::Group(resp)) => Ok(resp),
            Ok(_) => Err(EventLogError::Fatal(
                "unexpected reply from the coordinator".into(),
            )),
            Err(e) => Err(transport_error(&e)),
        }
    }

    /// Sets positions for assigned partitions that have none: the committed offset, or 0.
    async fn initialize_positions(
        &mut self,
        assignment: &[TopicPartition],
    ) -> Result<(), EventLogError> {
        let missing: Vec<TopicPartition> = assignment
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let resp = self
            .coordinator(GroupRequest::OffsetFetch {
                group: self.config.group_id.clone(),
                partitions: missing.clone(),
            })
            .await?;
        let GroupResponse::OffsetFetch(committed) = resp else {
            return Err(EventLogError::Fatal(
                "unexpected reply to OffsetFetch".into(),
            ));
        };
        for tp in missing {
            let offset = committed.get(&tp).copied().unwrap_or(0);
            self.positions.insert(tp, offset);
        }
        Ok(())
    }

    /// Where to fetch `tp` from now: the preferred read replica while it is fresh, else the
    /// leader (asking it for a replica in this consumer's rack unless that failed lately).
    fn fetch_target(
        &mut self,
        image: &ClusterMetadata,
        tp: &TopicPartition,
        now: Instant,
    ) -> Option<(SocketAddr, FetchTarget)> {
        if let Some((replica, until)) = self.read_replicas.get(tp).copied() {
            match image.broker(replica) {
                Some(b) if until > now => return Some((b.addr, FetchTarget::Follower)),
                _ => {
                    self.read_replicas.remove(tp);
                }
            }
        }
        let (_, leader) = image.leader_addr(tp)?;
        let client_rack = match self.leader_only.get(tp) {
            Some(until) if *until > now => None,
            _ => {
                self.leader_only.remove(tp);
                self.config.client_rack.clone()
            }
        };
        Some((leader, FetchTarget::Leader { client_rack }))
    }

    /// Stops reading `tp` from its preferred replica for a while: back to the leader.
    fn fall_back_to_leader(&mut self, tp: &TopicPartition, now: Instant) {
        if let Some((replica, _)) = self.read_replicas.remove(tp) {
            tracing::debug!(%tp, replica, "preferred read replica failed; reading from the leader");
        }
        self.leader_only
            .insert(tp.clone(), now + self.model.metadata_max_age());
    }

    /// One round of fetches to the brokers serving the assignment (leaders, or the followers
    /// they picked for this consumer's rack). Returns the records and whether anything failed
    /// in a way worth a pause.
    async fn fetch_round(&mut self, wait: Duration) -> (Vec<ConsumedRecord>, bool) {
        let image = match self.metadata.get().await {
            Ok(image) => image,
            Err(_) => return (Vec::new(), true),
        };
        let now = Instant::now();
        let mut failed = false;
        let mut by_broker: BTreeMap<SocketAddr, Vec<FetchPartition>> = BTreeMap::new();
        let positions: Vec<(TopicPartition, i64)> = self
            .positions
            .iter()
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        for (tp, offset) in positions {
            match self.fetch_target(&image, &tp, now) {
                Some((addr, target)) => by_broker.entry(addr).or_default().push(FetchPartition {
                    last_fetched_epoch: self.last_epochs.get(&tp).copied(),
                    tp,
                    fetch_offset: offset,
                    target,
                }),
                None => failed = true,
            }
        }
        if failed {
            self.metadata.mark_stale();
        }
        let timeout = wait + self.model.client_request_timeout();
        let records_max = self.model.fetch_records_max;
        let requests: Vec<(SocketAddr, Vec<FetchPartition>)> = by_broker.into_iter().collect();
        // Per request, its partitions and whether each went to a follower.
        let sent: Vec<Vec<(TopicPartition, bool)>> = requests
            .iter()
            .map(|(_, parts)| {
                parts
                    .iter()
                    .map(|p| (p.tp.clone(), p.target == FetchTarget::Follower))
                    .collect()
            })
            .collect();
        let replies = join_all(requests.into_iter().map(|(addr, partitions)| {
            let req = FetchRequest {
                partitions,
                wait_max_ms: wait.as_millis() as u64,
                records_max,
            };
            call_broker(addr, BrokerRequest::Fetch(req), timeout)
        }))
        .await;
        let now = Instant::now();
        let mut out = Vec::new();
        for (reply, sent) in replies.into_iter().zip(sent) {
            let parts = match reply {
                Ok(BrokerResponse::Fetch(parts)) => parts,
                Ok(_) | Err(_) => {
                    // A follower that cannot be reached: read from the leader instead.
                    let mut to_leader = false;
                    for (tp, follower) in &sent {
                        if *follower {
                            self.fall_back_to_leader(tp, now);
                        } else {
                            to_leader = true;
                        }
                    }
                    if to_leader {
                        self.metadata.mark_stale();
                        failed = true;
                    }
                    continue;
                }
            };
            for part in parts {
                let from_follower = sent.iter().any(|(tp, f)| *tp == part.tp && *f);
                let Some(position) = self.positions.get(&part.tp).copied() else {
                    continue;
                };
                match part.result {
                    Ok(fetched) => {
                        if let Some(replica) = fetched.preferred_read_replica {
                            let until = now + self.model.metadata_max_age();
                            self.read_replicas.insert(part.tp.clone(), (replica, until));
                            continue;
                        }
                        let mut next = position;
                        for r in fetched.records {
                            if r.offset != next {
                                continue;
                            }
                            next = r.offset + 1;
                            self.last_epochs.insert(part.tp.clone(), r.leader_epoch);
                            out.push(ConsumedRecord {
                                topic: part.tp.topic.clone(),
                                partition: part.tp.partition,
                                offset: r.offset,
                                key: r.key,
                                payload: r.payload,
                                headers: r.headers,
                            });
                        }
                        self.positions.insert(part.tp, next);
                    }
                    Err(FetchError::OffsetOutOfRange { high_watermark }) => {
                        // auto.offset.reset=earliest; the model keeps every record (no
                        // retention), so the earliest offset is 0.
                        tracing::warn!(tp = %part.tp, position, high_watermark, "fetch offset out of range; resetting to the earliest offset");
                        self.last_epochs.remove(&part.tp);
                        self.positions.insert(part.tp, 0);
                    }
                    Err(FetchError::Diverging { end_offset, .. }) => {
                        tracing::warn!(tp = %part.tp, position, end_offset, "log truncation detected; seeking to the end of the last epoch read");
                        self.last_epochs.remove(&part.tp);
                        self.positions.insert(part.tp, end_offset);
                    }
                    Err(FetchError::Code(_)) if from_follower => {
                        self.fall_back_to_leader(&part.tp, now);
                    }
                    Err(FetchError::Code(_)) => {
                        self.metadata.mark_stale();
                        failed = true;
                    }
                }
            }
        }
        (out, failed)
    }

    async fn commit_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), EventLogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let membership = lock(&self.membership.current).clone();
        let Some(member_id) = membership.member_id else {
            return Err(EventLogError::Fenced);
        };
        let resp = self
            .coordinator(GroupRequest::OffsetCommit {
                group: self.config.group_id.clone(),
                member_id,
                generation: membership.generation,
                offsets,
            })
            .await?;
        match resp {
            GroupResponse::OffsetCommit(Ok(())) => Ok(()),
            GroupResponse::OffsetCommit(Err(
                ErrorCode::IllegalGeneration
                | ErrorCode::UnknownMemberId
                | ErrorCode::RebalanceInProgress,
            )) => Err(EventLogError::Fenced),
            GroupResponse::OffsetCommit(Err(code)) => {
                Err(EventLogError::Unavailable(code.to_string()))
            }
            _ => Err(EventLogError::Fatal(
                "unexpected reply to OffsetCommit".into(),
            )),
        }
    }
}

/// The offsets after the last record of each partition in `records`.
fn offsets_after(records: &[ConsumedRecord]) -> BTreeMap<TopicPartition, i64> {
    let mut offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for r in records {
        let next = offsets
            .entry(TopicPartition::new(r.topic.clone(), r.partition))
            .or_insert(r.offset + 1);
        *next = (*next).max(r.offset + 1);
    }
    offsets
}

#[async_trait]
impl Consumer for ModelConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, EventLogError> {
        let shared = self.membership.clone();
        let _in_poll = InPoll::enter(&shared);
        let deadline = Instant::now() + timeout;
        let backoff = Duration::from_millis(POLL_BACKOFF_MS);
        loop {
            let seen = self.membership.changed.version();
            let membership = {
                let mut current = lock(&self.membership.current);
                if current.phase == Phase::RevokeRequested {
                    // Eager rebalance: give up every partition before rejoining.
                    current.assignment.clear();
                    current.phase = Phase::Revoked;
                    self.positions.clear();
                    self.last_epochs.clear();
                    self.positions_generation = None;
                    self.membership.changed.bump();
                }
                current.clone()
            };
            if membership.phase != Phase::Stable || membership.assignment.is_empty() {
                // Not in the group yet, or nothing assigned: wait for the membership task.
                let remaining = deadline.saturating_duration_since(Instant::now());
                if time::timeout(remaining, self.membership.changed.changed_since(seen))
                    .await
                    .is_err()
                {
                    return Ok(Vec::new());
                }
                continue;
            }
            if self.positions_generation != Some(membership.generation) {
                // A new generation: restart from the committed offsets.
                self.positions.clear();
                self.last_epochs.clear();
                self.positions_generation = Some(membership.generation);
            }
            if let Err(e) = self.initialize_positions(&membership.assignment).await {
                if Instant::now() + backoff >= deadline {
                    return Err(e);
                }
                time::sleep(backoff).await;
                continue;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait = remaining.min(self.model.fetch_wait_max());
            let (records, failed) = self.fetch_round(wait).await;
            if *lock(&self.membership.current) != membership {
                // Revoked or reassigned meanwhile: what was fetched is not ours to hand out.
                continue;
            }
            if !records.is_empty() {
                if self.config.enable_auto_commit {
                    if let Err(e) = self.commit_offsets(offsets_after(&records)).await {
                        tracing::warn!(error = %e, "auto-commit failed");
                    }
                }
                return Ok(records);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Vec::new());
            }
            if failed {
                time::sleep(backoff.min(remaining)).await;
            }
        }
    }

    async fn commit(&mut self, records: &[ConsumedRecord]) -> Result<(), EventLogError> {
        self.commit_offsets(offsets_after(records)).await
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError> {
        self.query_lag().await
    }

    fn lag_query(&mut self) -> Option<LagQuery> {
        Some(self.query_lag())
    }
}

impl ModelConsumer {
    /// The lag query: it holds the member's positions as they are now, not the member.
    fn query_lag(&self) -> LagQuery {
        let (metadata, model) = (Arc::clone(&self.metadata), Arc::clone(&self.model));
        let positions = self.positions.clone();
        Box::pin(async move {
            // As librdkafka's `rd_kafka_query_watermark_offsets`: each partition's leader is asked
            // for its high watermark (an empty fetch at the member's position that does not wait).
            let image = metadata.get().await?;
            let mut by_leader: BTreeMap<SocketAddr, Vec<FetchPartition>> = BTreeMap::new();
            for (tp, position) in &positions {
                let Some((_, leader)) = image.leader_addr(tp) else {
                    metadata.mark_stale();
                    return Err(EventLogError::Unavailable(format!(
                        "no leader known for {tp}"
                    )));
                };
                by_leader.entry(leader).or_default().push(FetchPartition {
                    tp: tp.clone(),
                    fetch_offset: *position,
                    last_fetched_epoch: None,
                    target: FetchTarget::Leader { client_rack: None },
                });
            }
            let timeout = model.client_request_timeout();
            let replies = join_all(by_leader.into_iter().map(|(addr, partitions)| {
                let req = FetchRequest {
                    partitions,
                    wait_max_ms: 0,
                    records_max: 0,
                };
                call_broker(addr, BrokerRequest::Fetch(req), timeout)
            }))
            .await;
            let mut out = Vec::new();
            for reply in replies {
                let parts = match reply {
                    Ok(BrokerResponse::Fetch(parts)) => parts,
                    Ok(_) => {
                        return Err(EventLogError::Fatal("unexpected reply to a fetch".into()))
                    }
                    Err(e) => return Err(transport_error(&e)),
                };
                for part in parts {
                    let high_watermark = match part.result {
                        Ok(fetched) => fetched.high_watermark,
                        Err(
                            FetchError::OffsetOutOfRange { high_watermark }
                            | FetchError::Diverging { high_watermark, .. },
                        ) => high_watermark,
                        Err(FetchError::Code(code)) => {
                            metadata.mark_stale();
                            return Err(EventLogError::Unavailable(format!(
                                "watermark of {}: {code:?}",
                                part.tp
                            )));
                        }
                    };
                    let Some(position) = positions.get(&part.tp).copied() else {
                        continue;
                    };
                    out.push(PartitionLag {
                        topic: part.tp.topic.clone(),
                        partition: part.tp.partition,
                        position,
                        high_watermark,
                    });
                }
            }
            out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            Ok(out)
        })
    }
}

/// Keeps the member in its group until the consumer is dropped, then leaves.
async fn membership_loop(
    model: Arc<KafkaModelConfig>,
    config: ConsumerConfig,
    topics: Vec<String>,
    shared: Weak<SharedMembership>,
) {
    let controller = model.controller_addr();
    let timeout = model.client_request_timeout();
    let interval =
        (config.session_timeout / 3).max(Duration::from_millis(HEARTBEAT_INTERVAL_MIN_MS));
    let retry = Duration::from_millis(POLL_BACKOFF_MS);
    let call = |req: GroupRequest| async move {
        let reply: std::io::Result<ControllerResponse> =
            net::call(controller, ControllerRequest::Group(req), timeout).await;
        match reply {
            Ok(ControllerResponse::Group(resp)) => Some(resp),
            _ => None,
        }
    };
    let leave = |member_id: String| {
        call(GroupRequest::Leave {
            group: config.group_id.clone(),
            member_id,
        })
    };
    // The member id last held, for leaving the group once the consumer is gone.
    let mut last_member_id: Option<String> = None;
    loop {
        let Some(state) = shared.upgrade() else {
            if let Some(member_id) = last_member_id {
                let _ = leave(member_id).await;
            }
            return;
        };
        let seen = state.changed.version();
        let current = lock(&state.current).clone();
        last_member_id.clone_from(&current.member_id);
        let last_poll = *lock(&state.last_poll);
        let poll_exceeded =
            last_poll.is_some_and(|t| Instant::now().duration_since(t) > config.max_poll_interval);
        match (current.phase, current.member_id.clone()) {
            (Phase::Stable | Phase::RevokeRequested, Some(id)) if poll_exceeded => {
                // The application stopped polling: leave, so the group can move on without
                // it; it joins again as a new member at its next poll.
                tracing::warn!(group = %config.group_id, member = %id, "max.poll.interval.ms exceeded; leaving the group");
                {
                    let mut m = lock(&state.current);
                    m.member_id = None;
                    m.phase = Phase::RevokeRequested;
                }
                state.changed.bump();
                drop(state);
                let _ = leave(id).await;
            }
            (Phase::Stable | Phase::RevokeRequested, Some(id)) => {
                drop(state);
                let resp = call(GroupRequest::Heartbeat {
                    group: config.group_id.clone(),
                    member_id: id.clone(),
                    generation: current.generation,
                })
                .await;
                let lost = match resp {
                    Some(GroupResponse::Heartbeat(Err(ErrorCode::RebalanceInProgress))) => {
                        Some(false)
                    }
                    Some(GroupResponse::Heartbeat(Err(_))) => Some(true),
                    _ => None,
                };
                if let (Some(lost), Some(state)) = (lost, shared.upgrade()) {
                    let mut m = lock(&state.current);
                    if m.member_id.as_ref() == Some(&id) && m.phase == Phase::Stable {
                        m.phase = Phase::RevokeRequested;
                        if lost {
                            m.member_id = None;
                        }
                        drop(m);
                        state.changed.bump();
                        continue;
                    }
                }
                wait_for(&shared, seen, interval).await;
            }
            (Phase::Stable | Phase::RevokeRequested, None) => {
                // Evicted: wait for the application's poll to revoke.
                drop(state);
                wait_for(&shared, seen, interval).await;
            }
            (Phase::Revoked, member_id) => {
                drop(state);
                if poll_exceeded {
                    // Not polled since it left: wait for the application.
                    wait_for(&shared, seen, interval).await;
                    continue;
                }
                let resp = call(GroupRequest::Join {
                    group: config.group_id.clone(),
                    member_id,
                    client_id: config.client_id.clone(),
                    topics: topics.clone(),
                    session_timeout_ms: config.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: config.max_poll_interval.as_millis() as u64,
                })
                .await;
                let Some(GroupResponse::Join(Ok(joined))) = resp else {
                    time::sleep(retry).await;
                    continue;
                };
                let Some(state) = shared.upgrade() else {
                    last_member_id = Some(joined.member_id);
                    continue;
                };
                let JoinResult {
                    member_id,
                    generation,
                    assignment,
                    pending,
                } = joined;
                last_member_id = Some(member_id.clone());
                {
                    let mut m = lock(&state.current);
                    m.member_id = Some(member_id);
                    if !pending {
                        m.generation = generation;
                        m.assignment = assignment;
                        m.phase = Phase::Stable;
                    }
                }
                state.changed.bump();
                drop(state);
                if pending {
                    time::sleep(retry).await;
                }
            }
        }
    }
}

/// Waits until the shared membership changes past `seen`, for at most `limit`.
async fn wait_for(shared: &Weak<SharedMembership>, seen: u64, limit: Duration) {
    let Some(state) = shared.upgrade() else {
        return;
    };
    let changed = state.changed.changed_since(seen);
    let _ = time::timeout(limit, changed).await;
}
