//! The leader's side of a partition: produce (with `min.insync.replicas`, idempotent
//! duplicate detection, producer epoch fencing and `acks=all` waiting for the high watermark,
//! `NOT_ENOUGH_REPLICAS_AFTER_APPEND` when the ISR shrank meanwhile), consumer fetches (below
//! the high watermark only, or a preferred read replica in the consumer's rack; a follower
//! serves the consumers a leader sent to it from here too), follower fetches (which report the
//! followers' progress and move the high watermark), and ISR shrink/expand proposals to the
//! controller.

use std::{collections::BTreeSet, sync::atomic::Ordering, time::Duration};

use madsim::time::{self, Instant};
use platform::ports::Acks;

use super::{Broker, BrokerState, FollowerProgress, Leadership};
use crate::kafka::{
    disk::BrokerDisk,
    log::SequenceCheck,
    net,
    protocol::{
        AlterPartition, BrokerId, ControllerRequest, ControllerResponse, ErrorCode, FetchError,
        FetchPartition, FetchPartitionResponse, FetchRequest, FetchTarget, FetchedRecords,
        ProduceRequest, ReplicaFetchPartitionResponse, ReplicaFetchRequest, ReplicaFetched,
        TopicPartition,
    },
};

/// Bound on how long a leader holds any request (produce or fetch), whatever the client asks.
const REQUEST_HOLD_MAX_MS: u64 = 30_000;

impl Broker {
    pub(super) async fn produce(&self, req: ProduceRequest) -> Result<i64, ErrorCode> {
        self.counters
            .produce_requests
            .fetch_add(1, Ordering::Relaxed);
        let (offset, epoch) = {
            let state = self.state();
            let mut disk = self.disk();
            let lead = state
                .leading
                .get(&req.tp)
                .ok_or(ErrorCode::NotLeaderOrFollower)?;
            if req.acks == Acks::All
                && lead.isr.len() < self.config.min_insync_replicas_of(&req.tp.topic)
            {
                return Err(ErrorCode::NotEnoughReplicas);
            }
            let epoch = lead.leader_epoch;
            let log = disk.logs.entry(req.tp.clone()).or_default();
            let check = match &req.stamp {
                Some(stamp) => log.check_sequence(stamp),
                None => SequenceCheck::New,
            };
            let offset = match check {
                SequenceCheck::New => log.append_as_leader(
                    Instant::now(),
                    epoch,
                    req.stamp,
                    req.key,
                    req.payload,
                    req.headers,
                ),
                SequenceCheck::Duplicate(offset) => {
                    self.counters
                        .duplicate_batches
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(broker = self.id, tp = %req.tp, offset, "duplicate batch dropped");
                    offset
                }
                SequenceCheck::OutOfOrder => return Err(ErrorCode::OutOfOrderSequence),
                SequenceCheck::StaleEpoch => {
                    self.counters.fenced_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(broker = self.id, tp = %req.tp, stamp = ?req.stamp, "stale producer epoch fenced");
                    return Err(ErrorCode::InvalidProducerEpoch);
                }
            };
            self.update_high_watermark(&state, &mut disk, &req.tp);
            (offset, epoch)
        };
        self.notify_progress();
        if req.acks != Acks::All {
            return Ok(offset);
        }
        let deadline =
            Instant::now() + Duration::from_millis(req.timeout_ms.min(REQUEST_HOLD_MAX_MS));
        loop {
            let seen = self.progress.version();
            {
                let state = self.state();
                let lead = match state.leading.get(&req.tp) {
                    Some(l) if l.leader_epoch == epoch => l,
                    _ => return Err(ErrorCode::NotLeaderOrFollower),
                };
                let hw = self
                    .disk()
                    .logs
                    .get(&req.tp)
                    .map_or(0, |l| l.high_watermark());
                if hw > offset {
                    if lead.isr.len() < self.config.min_insync_replicas_of(&req.tp.topic) {
                        // The ISR shrank below `min.insync.replicas` after the append: the
                        // record is committed, but not on enough replicas to acknowledge it.
                        self.counters
                            .not_enough_replicas_after_append
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(ErrorCode::NotEnoughReplicasAfterAppend);
                    }
                    return Ok(offset);
                }
            }
            if time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.progress.changed_since(seen),
            )
            .await
            .is_err()
            {
                return Err(ErrorCode::RequestTimedOut);
            }
        }
    }

    /// A consumer fetch: each partition served as its leader (below the high watermark, or
    /// naming a preferred read replica in the consumer's rack) or as a follower the leader
    /// picked (below the high watermark this follower knows). Held while nothing is ready.
    pub(super) async fn fetch(&self, req: FetchRequest) -> Vec<FetchPartitionResponse> {
        let deadline =
            Instant::now() + Duration::from_millis(req.wait_max_ms.min(REQUEST_HOLD_MAX_MS));
        loop {
            let seen = self.progress.version();
            let responses: Vec<FetchPartitionResponse> = {
                let state = self.state();
                let disk = self.disk();
                req.partitions
                    .iter()
                    .map(|p| FetchPartitionResponse {
                        tp: p.tp.clone(),
                        result: self.read_for_consumer(&state, &disk, p, req.records_max),
                    })
                    .collect()
            };
            let ready = responses.iter().any(|r| {
                !matches!(&r.result, Ok(f) if f.records.is_empty() && f.preferred_read_replica.is_none())
            });
            if ready || Instant::now() >= deadline {
                self.count_consumer_fetch(&req, &responses);
                return responses;
            }
            if time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.progress.changed_since(seen),
            )
            .await
            .is_err()
            {
                continue;
            }
        }
    }

    fn count_consumer_fetch(&self, req: &FetchRequest, responses: &[FetchPartitionResponse]) {
        let served = |follower: bool| {
            responses.iter().any(|r| {
                matches!(&r.result, Ok(f) if !f.records.is_empty())
                    && req
                        .partitions
                        .iter()
                        .any(|p| p.tp == r.tp && (p.target == FetchTarget::Follower) == follower)
            })
        };
        let (as_leader, as_follower) = (served(false), served(true));
        if as_leader || as_follower {
            self.counters
                .consumer_fetches
                .fetch_add(1, Ordering::Relaxed);
        }
        if as_follower {
            self.counters
                .consumer_fetches_as_follower
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One partition of a consumer fetch, read now.
    fn read_for_consumer(
        &self,
        state: &BrokerState,
        disk: &BrokerDisk,
        p: &FetchPartition,
        records_max: usize,
    ) -> Result<FetchedRecords, FetchError> {
        let not_serving = FetchError::Code(ErrorCode::NotLeaderOrFollower);
        let log = disk.logs.get(&p.tp);
        let hw = log.map_or(0, |l| l.high_watermark());
        let leo = log.map_or(0, |l| l.log_end_offset());
        let records = || log.map_or_else(Vec::new, |l| l.read(p.fetch_offset, hw, records_max));
        match &p.target {
            FetchTarget::Leader { client_rack } => {
                let lead = state.leading.get(&p.tp).ok_or(not_serving)?;
                // The record before the position written in the same epoch (the usual case,
                // checked without scanning the log) proves the log did not diverge there.
                let same_epoch = |epoch: i32| {
                    usize::try_from(p.fetch_offset - 1)
                        .ok()
                        .and_then(|i| log?.records().get(i))
                        .is_some_and(|r| r.leader_epoch == epoch)
                };
                if let Some(epoch) = p.last_fetched_epoch.filter(|e| !same_epoch(*e)) {
                    let (_, end_offset) = log.map_or((None, 0), |l| l.epoch_end_offset(epoch));
                    if end_offset < p.fetch_offset {
                        return Err(FetchError::Diverging {
                            end_offset,
                            high_watermark: hw,
                        });
                    }
                }
                if p.fetch_offset > leo || p.fetch_offset < 0 {
                    return Err(FetchError::OffsetOutOfRange { high_watermark: hw });
                }
                if let Some(replica) =
                    self.preferred_read_replica(state, lead, client_rack.as_deref(), p.fetch_offset)
                {
                    return Ok(FetchedRecords {
                        records: Vec::new(),
                        preferred_read_replica: Some(replica),
                        high_watermark: hw,
                    });
                }
                Ok(FetchedRecords {
                    records: records(),
                    preferred_read_replica: None,
                    high_watermark: hw,
                })
            }
            FetchTarget::Follower => {
                // Serve only as an in-sync follower, per the newest image this broker has.
                let in_sync = state.following.contains_key(&p.tp)
                    && state.metadata.as_ref().is_some_and(|m| {
                        !m.fenced.contains(&self.id)
                            && m.partitions
                                .get(&p.tp)
                                .is_some_and(|s| s.isr.contains(&self.id))
                    });
                if !in_sync {
                    return Err(not_serving);
                }
                if p.fetch_offset > leo || p.fetch_offset < 0 {
                    return Err(FetchError::Code(ErrorCode::OffsetOutOfRange));
                }
                Ok(FetchedRecords {
                    records: records(),
                    preferred_read_replica: None,
                    high_watermark: hw,
                })
            }
        }
    }

    /// Kafka's `RackAwareReplicaSelector`: for a consumer in `client_rack`, the leader if it is
    /// in that rack, else the in-sync follower in that rack that holds the fetch offset (the
    /// furthest along; the lowest id on a tie). `None` means: read from the leader.
    fn preferred_read_replica(
        &self,
        state: &BrokerState,
        lead: &Leadership,
        client_rack: Option<&str>,
        fetch_offset: i64,
    ) -> Option<BrokerId> {
        let rack = client_rack?;
        let rack_of = |id: BrokerId| self.config.broker(id).map(|b| b.rack.as_str());
        if rack_of(self.id) == Some(rack) {
            return None;
        }
        let fenced = state.metadata.as_ref().map(|m| &m.fenced);
        lead.isr
            .iter()
            .copied()
            .filter(|id| *id != self.id && rack_of(*id) == Some(rack))
            .filter(|id| lead.isr_proposed.as_ref().is_none_or(|p| p.contains(id)))
            .filter(|id| fenced.is_none_or(|f| !f.contains(id)))
            .filter_map(|id| {
                let leo = lead.followers.get(&id)?.log_end_offset?;
                (leo >= fetch_offset).then_some((leo, std::cmp::Reverse(id)))
            })
            .max()
            .map(|(_, std::cmp::Reverse(id))| id)
    }

    pub(super) async fn serve_replica_fetch(
        &self,
        req: ReplicaFetchRequest,
    ) -> Vec<ReplicaFetchPartitionResponse> {
        let deadline =
            Instant::now() + Duration::from_millis(req.wait_max_ms.min(REQUEST_HOLD_MAX_MS));
        loop {
            let (responses, hw_moved) = self.replica_fetch_once(&req);
            if hw_moved {
                self.notify_progress();
            }
            let seen = self.progress.version();
            let ready = responses.iter().any(|r| match &r.result {
                Ok(ReplicaFetched::Records {
                    records,
                    high_watermark,
                }) => {
                    let known = req
                        .partitions
                        .iter()
                        .find(|p| p.tp == r.tp)
                        .map_or(0, |p| p.high_watermark);
                    !records.is_empty() || *high_watermark > known
                }
                _ => true,
            });
            if ready {
                return responses;
            }
            if time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.progress.changed_since(seen),
            )
            .await
            .is_err()
            {
                return responses;
            }
        }
    }

    /// One pass over a follower's fetch: divergence check, progress bookkeeping, high
    /// watermark, records. Returns the responses and whether any high watermark moved.
    fn replica_fetch_once(
        &self,
        req: &ReplicaFetchRequest,
    ) -> (Vec<ReplicaFetchPartitionResponse>, bool) {
        let now = Instant::now();
        let mut state = self.state();
        let mut disk = self.disk();
        let mut hw_moved = false;
        let mut responses = Vec::with_capacity(req.partitions.len());
        for p in &req.partitions {
            let result = (|| {
                let lead = state
                    .leading
                    .get_mut(&p.tp)
                    .ok_or(ErrorCode::NotLeaderOrFollower)?;
                if p.leader_epoch != lead.leader_epoch {
                    return Err(if p.leader_epoch < lead.leader_epoch {
                        ErrorCode::FencedLeaderEpoch
                    } else {
                        ErrorCode::NotLeaderOrFollower
                    });
                }
                let log = disk.logs.entry(p.tp.clone()).or_default();
                let leo = log.log_end_offset();
                if let Some(last_epoch) = p.last_fetched_epoch {
                    let (epoch, end_offset) = log.epoch_end_offset(last_epoch);
                    if epoch != Some(last_epoch) || end_offset < p.fetch_offset {
                        return Ok(ReplicaFetched::Diverging { epoch, end_offset });
                    }
                } else if p.fetch_offset > leo {
                    return Ok(ReplicaFetched::Diverging {
                        epoch: None,
                        end_offset: 0,
                    });
                }
                let follower =
                    lead.followers
                        .entry(req.replica)
                        .or_insert_with(|| FollowerProgress {
                            log_end_offset: None,
                            last_caught_up: now,
                            previous_fetch: None,
                            fetched_since_isr_check: false,
                        });
                follower.log_end_offset = Some(p.fetch_offset);
                follower.fetched_since_isr_check = true;
                if p.fetch_offset >= leo {
                    follower.last_caught_up = now;
                } else if let Some((previous_leo, at)) = follower.previous_fetch {
                    if p.fetch_offset >= previous_leo && at > follower.last_caught_up {
                        follower.last_caught_up = at;
                    }
                }
                follower.previous_fetch = Some((leo, now));
                Ok(ReplicaFetched::Records {
                    records: log.read(p.fetch_offset, leo, req.records_max),
                    high_watermark: 0,
                })
            })();
            responses.push(ReplicaFetchPartitionResponse {
                tp: p.tp.clone(),
                result,
            });
        }
        for r in &mut responses {
            if let Ok(ReplicaFetched::Records { high_watermark, .. }) = &mut r.result {
                hw_moved |= self.update_high_watermark(&state, &mut disk, &r.tp);
                *high_watermark = disk.logs.get(&r.tp).map_or(0, |l| l.high_watermark());
            }
        }
        (responses, hw_moved)
    }

    /// Periodically proposes ISR changes: drop followers behind the leader's log end and not
    /// caught up within `replica_lag_time_max_ms`, add back followers that reached the high
    /// watermark.
    pub(super) async fn isr_maintenance_loop(&self) {
        loop {
            time::sleep(self.config.isr_check_interval()).await;
            for (tp, proposal) in self.isr_proposals() {
                self.propose_isr(tp, proposal).await;
            }
        }
    }

    fn isr_proposals(&self) -> Vec<(TopicPartition, AlterPartition)> {
        let now = Instant::now();
        let lag_max = self.config.replica_lag_time_max();
        let mut state = self.state();
        let disk = self.disk();
        let fenced = state
            .metadata
            .as_ref()
            .map(|m| m.fenced.clone())
            .unwrap_or_default();
        let mut proposals = Vec::new();
        for (tp, lead) in state.leading.iter_mut() {
            if lead.isr_proposed.is_some() {
                continue;
            }
            let Some(log) = disk.logs.get(tp) else {
                continue;
            };
            let hw = log.high_watermark();
            // Kafka also requires the follower to hold the leader's current epoch start.
            let epoch_start = log
                .records()
                .iter()
                .find(|r| r.leader_epoch >= lead.leader_epoch)
                .map_or(log.log_end_offset(), |r| r.offset);
            let mut new_isr: BTreeSet<_> = lead.isr.clone();
            for (follower, progress) in lead.followers.iter_mut() {
                let in_isr = lead.isr.contains(follower);
                let caught_up = std::mem::take(&mut progress.fetched_since_isr_check)
                    && progress
                        .log_end_offset
                        .is_some_and(|leo| leo >= hw && leo >= epoch_start);
                // Kafka's `Replica.isCaughtUp`: a follower holding the leader's whole log is
                // in sync however long ago it fetched; only one behind is judged by lag time.
                let at_log_end = progress.log_end_offset == Some(log.log_end_offset());
                if in_isr && !at_log_end && now.duration_since(progress.last_caught_up) > lag_max {
                    new_isr.remove(follower);
                } else if !in_isr
                    && caught_up
                    && !fenced.contains(follower)
                    && lead.replicas.contains(follower)
                {
                    new_isr.insert(*follower);
                }
            }
            if new_isr != lead.isr {
                proposals.push((
                    tp.clone(),
                    AlterPartition {
                        broker: self.id,
                        incarnation: self.incarnation,
                        tp: tp.clone(),
                        leader_epoch: lead.leader_epoch,
                        partition_epoch: lead.partition_epoch,
                        new_isr,
                    },
                ));
            }
        }
        proposals
    }

    async fn propose_isr(&self, tp: TopicPartition, proposal: AlterPartition) {
        {
            let mut state = self.state();
            let Some(lead) = state.leading.get_mut(&tp) else {
                return;
            };
            if lead.leader_epoch != proposal.leader_epoch {
                return;
            }
            tracing::info!(broker = self.id, %tp, isr = ?lead.isr, proposed = ?proposal.new_isr, "proposing ISR change");
            lead.isr_proposed = Some(proposal.new_isr.clone());
        }
        let epoch = proposal.leader_epoch;
        let reply: std::io::Result<ControllerResponse> = net::call(
            self.config.controller_addr(),
            ControllerRequest::AlterPartition(proposal),
            self.config.controller_request_timeout(),
        )
        .await;
        {
            let mut state = self.state();
            let Some(lead) = state.leading.get_mut(&tp) else {
                return;
            };
            if lead.leader_epoch != epoch {
                return;
            }
            lead.isr_proposed = None;
            match reply {
                Ok(ControllerResponse::AlterPartition(Ok(p))) => {
                    if p.partition_epoch > lead.partition_epoch {
                        lead.isr = p.isr;
                        lead.partition_epoch = p.partition_epoch;
                    }
                }
                Ok(ControllerResponse::AlterPartition(Err(code))) => {
                    tracing::info!(broker = self.id, %tp, %code, "ISR change refused");
                }
                Ok(_) => tracing::error!("unexpected reply to AlterPartition"),
                Err(e) => {
                    tracing::debug!(broker = self.id, %tp, error = %e, "AlterPartition failed")
                }
            }
            let mut disk = self.disk();
            self.update_high_watermark(&state, &mut disk, &tp);
        }
        self.notify_progress();
    }
}
