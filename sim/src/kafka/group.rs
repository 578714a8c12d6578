//! The group coordinator: membership, generations, range assignment, session expiry and
//! generation-fenced offset commits. Membership lives in memory (members rejoin after a
//! coordinator restart, as they do after a coordinator move in Kafka); generations and
//! committed offsets live on the controller's disk.
//!
//! Kafka's classic protocol with eager assignors, as librdkafka speaks it by default. A
//! membership change (a member joins, leaves, changes its topics, or its session expires)
//! starts a rebalance: members learn of it from their next heartbeat
//! (`REBALANCE_IN_PROGRESS`), revoke all their partitions at their application's next poll,
//! and rejoin. The rebalance completes — a new generation and its assignment — only once
//! every member has rejoined (the JoinGroup barrier) or the rebalance timeout (the members'
//! largest `max.poll.interval.ms`) evicted those that did not; so a partition's new owner
//! starts only after its old owner gave it up, or was evicted. Until then a join is answered
//! "pending" and repeated. The coordinator computes the assignment itself (range assignor)
//! instead of a leader member doing it in SyncGroup; the outcome is the same. Offsets
//! committed with the current generation are accepted while a rebalance is pending, as
//! Kafka accepts them in `PreparingRebalance`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use madsim::time::Instant;

use super::{
    disk::ControllerDisk,
    protocol::{ErrorCode, GroupRequest, GroupResponse, JoinResult, TopicPartition},
};

/// Bound on members per group.
pub const GROUP_MEMBERS_MAX: usize = 256;

#[derive(Debug)]
struct Member {
    topics: Vec<String>,
    session_timeout: Duration,
    /// `max.poll.interval.ms`: how long a rebalance waits for this member to rejoin.
    rebalance_timeout: Duration,
    last_heartbeat: Instant,
}

/// A rebalance under way: who rejoined, and when the others are evicted.
#[derive(Debug)]
struct Rebalance {
    deadline: Instant,
    joined: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct GroupState {
    members: BTreeMap<String, Member>,
    assignment: BTreeMap<String, Vec<TopicPartition>>,
    rebalance: Option<Rebalance>,
}

impl GroupState {
    /// Starts a rebalance unless one is under way.
    fn prepare_rebalance(&mut self, group: &str, now: Instant) {
        if self.rebalance.is_some() {
            return;
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        tracing::info!(%group, members = self.members.len(), "group preparing to rebalance");
        self.rebalance = Some(Rebalance {
            deadline: now + timeout,
            joined: BTreeSet::new(),
        });
    }

    /// Completes the rebalance under way once every member rejoined.
    fn try_complete(&mut self, disk: &mut ControllerDisk, group: &str) {
        let all_joined = match &self.rebalance {
            Some(r) => self.members.keys().all(|id| r.joined.contains(id)),
            None => false,
        };
        if all_joined {
            self.rebalance = None;
            rebalance(disk, group, self);
        }
    }
}

/// The coordinator's in-memory membership for every group.
#[derive(Debug, Default)]
pub struct GroupCoordinator {
    groups: BTreeMap<String, GroupState>,
}

impl GroupCoordinator {
    /// Handles one request against the controller's disk.
    pub fn handle(
        &mut self,
        disk: &mut ControllerDisk,
        req: GroupRequest,
        now: Instant,
    ) -> GroupResponse {
        match req {
            GroupRequest::Join {
                group,
                member_id,
                client_id,
                topics,
                session_timeout_ms,
                rebalance_timeout_ms,
            } => GroupResponse::Join(self.join(
                disk,
                &group,
                member_id,
                &client_id,
                topics,
                (
                    Duration::from_millis(session_timeout_ms),
                    Duration::from_millis(rebalance_timeout_ms),
                ),
                now,
            )),
            GroupRequest::Heartbeat {
                group,
                member_id,
                generation,
            } => {
                GroupResponse::Heartbeat(self.heartbeat(disk, &group, &member_id, generation, now))
            }
            GroupRequest::Leave { group, member_id } => {
                self.remove_member(disk, &group, &member_id, now);
                GroupResponse::Leave
            }
            GroupRequest::OffsetCommit {
                group,
                member_id,
                generation,
                offsets,
            } => GroupResponse::OffsetCommit(
                self.commit(disk, &group, &member_id, generation, offsets),
            ),
            GroupRequest::OffsetFetch { group, partitions } => {
                let record = disk.groups.get(&group);
                let offsets = partitions
                    .into_iter()
                    .filter_map(|tp| {
                        let offset = *record?.offsets.get(&tp)?;
                        Some((tp, offset))
                    })
                    .collect();
                GroupResponse::OffsetFetch(offsets)
            }
        }
    }

    /// Evicts members whose session expired, and members a rebalance waited for in vain.
    pub fn expire_sessions(&mut self, disk: &mut ControllerDisk, now: Instant) {
        let mut expired = Vec::new();
        for (group, state) in &self.groups {
            for (member_id, member) in &state.members {
                if now.duration_since(member.last_heartbeat) > member.session_timeout {
                    expired.push((group.clone(), member_id.clone(), "session expired"));
                }
            }
            if let Some(r) = state.rebalance.as_ref().filter(|r| now >= r.deadline) {
                for member_id in state.members.keys() {
                    if !r.joined.contains(member_id) {
                        expired.push((
                            group.clone(),
                            member_id.clone(),
                            "did not rejoin within max.poll.interval.ms",
                        ));
                    }
                }
            }
        }
        for (group, member_id, why) in expired {
            tracing::info!(%group, %member_id, why, "group member evicted");
            self.remove_member(disk, &group, &member_id, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        disk: &mut ControllerDisk,
        group: &str,
        member_id: Option<String>,
        client_id: &str,
        topics: Vec<String>,
        (session_timeout, rebalance_timeout): (Duration, Duration),
        now: Instant,
    ) -> Result<JoinResult, ErrorCode> {
        let state = self.groups.entry(group.to_owned()).or_default();
        let known = member_id.filter(|id| state.members.contains_key(id));
        let member_id = match known {
            Some(id) => id,
            None => {
                if state.members.len() >= GROUP_MEMBERS_MAX {
                    return Err(ErrorCode::RebalanceInProgress);
                }
                let id = format!("{client_id}-{}", disk.member_id_next);
                disk.member_id_next += 1;
                id
            }
        };
        let mut topics = topics;
        topics.sort();
        topics.dedup();
        let changed = match state.members.get_mut(&member_id) {
            Some(m) => {
                m.last_heartbeat = now;
                m.session_timeout = session_timeout;
                m.rebalance_timeout = rebalance_timeout;
                let changed = m.topics != topics;
                m.topics = topics;
                changed
            }
            None => {
                state.members.insert(
                    member_id.clone(),
                    Member {
                        topics,
                        session_timeout,
                        rebalance_timeout,
                        last_heartbeat: now,
                    },
                );
                true
            }
        };
        if changed {
            state.prepare_rebalance(group, now);
        }
        if let Some(r) = state.rebalance.as_mut() {
            r.joined.insert(member_id.clone());
        }
        state.try_complete(disk, group);
        let generation = disk.groups.get(group).map_or(0, |g| g.generation);
        Ok(JoinResult {
            assignment: state
                .assignment
                .get(&member_id)
                .cloned()
                .unwrap_or_default(),
            member_id,
            generation,
            pending: state.rebalance.is_some(),
        })
    }

    fn heartbeat(
        &mut self,
        disk: &ControllerDisk,
        group: &str,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let member = self
            .groups
            .get_mut(group)
            .and_then(|g| g.members.get_mut(member_id))
            .ok_or(ErrorCode::UnknownMemberId)?;
        member.last_heartbeat = now;
        let current = disk.groups.get(group).map_or(0, |g| g.generation);
        let pending = self
            .groups
            .get(group)
            .is_some_and(|g| g.rebalance.is_some());
        if pending || generation != current {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    fn commit(
        &mut self,
        disk: &mut ControllerDisk,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ErrorCode> {
        let is_member = self
            .groups
            .get(group)
            .is_some_and(|g| g.members.contains_key(member_id));
        if !is_member {
            return Err(ErrorCode::UnknownMemberId);
        }
        let record = disk.groups.entry(group.to_owned()).or_default();
        if generation != record.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        record.offsets.extend(offsets);
        Ok(())
    }

    fn remove_member(
        &mut self,
        disk: &mut ControllerDisk,
        group: &str,
        member_id: &str,
        now: Instant,
    ) {
        let Some(state) = self.groups.get_mut(group) else {
            return;
        };
        if state.members.remove(member_id).is_some() {
            if let Some(r) = state.rebalance.as_mut() {
                r.joined.remove(member_id);
            }
            state.prepare_rebalance(group, now);
            state.try_complete(disk, group);
        }
    }
}

/// Starts a new generation and recomputes the assignment (range assignor per topic).
fn rebalance(disk: &mut ControllerDisk, group: &str, state: &mut GroupState) {
    let partitions_of = |topic: &str| -> Vec<TopicPartition> {
        disk.partitions
            .keys()
            .filter(|tp| tp.topic == topic)
            .cloned()
            .collect()
    };
    let mut assignment: BTreeMap<String, Vec<TopicPartition>> = state
        .members
        .keys()
        .map(|id| (id.clone(), Vec::new()))
        .collect();
    let topics: BTreeSet<&String> = state.members.values().flat_map(|m| &m.topics).collect();
    for topic in topics {
        let subscribers: Vec<&String> = state
            .members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(id, _)| id)
            .collect();
        let partitions = partitions_of(topic);
        let per_member = partitions.len() / subscribers.len();
        let extra = partitions.len() % subscribers.len();
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let n = per_member + usize::from(i < extra);
            if let Some(a) = assignment.get_mut(*member) {
                a.extend(partitions[next..next + n].iter().cloned());
            }
            next += n;
        }
    }
    state.assignment = assignment;
    let record = disk.groups.entry(group.to_owned()).or_default();
    record.generation += 1;
    tracing::info!(%group, generation = record.generation, members = state.members.len(), "group rebalanced");
}
