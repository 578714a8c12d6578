//! The group coordinator: membership, generations, range assignment, session expiry and
//! generation-fenced offset commits. Membership lives in memory (members rejoin after a
//! coordinator restart, as they do after a coordinator move in Kafka); generations and
//! committed offsets live on the controller's disk.
//!
//! Simplified from Kafka's classic protocol: the coordinator computes the assignment itself
//! (range assignor, as KIP-848's server-side assignors do) and hands it out in the join reply.
//! Every membership change bumps the generation; members learn of it from their next
//! heartbeat (`REBALANCE_IN_PROGRESS`) and rejoin. Eager semantics: a member drops all its
//! positions when its generation changes and restarts from the committed offsets.

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
    last_heartbeat: Instant,
}

#[derive(Debug, Default)]
struct GroupState {
    members: BTreeMap<String, Member>,
    assignment: BTreeMap<String, Vec<TopicPartition>>,
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
            } => GroupResponse::Join(self.join(
                disk,
                &group,
                member_id,
                &client_id,
                topics,
                Duration::from_millis(session_timeout_ms),
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
                self.remove_member(disk, &group, &member_id);
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

    /// Evicts members whose session expired; returns the groups that rebalanced.
    pub fn expire_sessions(&mut self, disk: &mut ControllerDisk, now: Instant) -> Vec<String> {
        let mut expired = Vec::new();
        for (group, state) in &self.groups {
            for (member_id, member) in &state.members {
                if now.duration_since(member.last_heartbeat) > member.session_timeout {
                    expired.push((group.clone(), member_id.clone()));
                }
            }
        }
        let mut rebalanced: Vec<String> = Vec::new();
        for (group, member_id) in expired {
            tracing::info!(%group, %member_id, "group member session expired");
            self.remove_member(disk, &group, &member_id);
            if !rebalanced.contains(&group) {
                rebalanced.push(group);
            }
        }
        rebalanced
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        disk: &mut ControllerDisk,
        group: &str,
        member_id: Option<String>,
        client_id: &str,
        topics: Vec<String>,
        session_timeout: Duration,
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
                        last_heartbeat: now,
                    },
                );
                true
            }
        };
        if changed {
            rebalance(disk, group, state);
        }
        let generation = disk.groups.get(group).map_or(0, |g| g.generation);
        Ok(JoinResult {
            assignment: state
                .assignment
                .get(&member_id)
                .cloned()
                .unwrap_or_default(),
            member_id,
            generation,
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
        if generation != current {
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

    fn remove_member(&mut self, disk: &mut ControllerDisk, group: &str, member_id: &str) {
        let Some(state) = self.groups.get_mut(group) else {
            return;
        };
        if state.members.remove(member_id).is_some() {
            rebalance(disk, group, state);
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
