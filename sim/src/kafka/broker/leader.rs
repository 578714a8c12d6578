//! The leader's side of a partition: produce (with `min.insync.replicas`, idempotent
//! duplicate detection and `acks=all` waiting for the high watermark), consumer fetches
//! (below the high watermark only), follower fetches (which report the followers' progress and
//! move the high watermark), and ISR shrink/expand proposals to the controller.

use std::{collections::BTreeSet, sync::atomic::Ordering, time::Duration};

use madsim::time::{self, Instant};
use platform::ports::Acks;

use super::{update_high_watermark, Broker, FollowerProgress};
use crate::{
    kafka::{
        log::SequenceCheck,
        protocol::{
            AlterPartition, ControllerRequest, ControllerResponse, ErrorCode, FetchError,
            FetchPartitionResponse, FetchRequest, FetchedRecords, ProduceRequest,
            ReplicaFetchPartitionResponse, ReplicaFetchRequest, ReplicaFetched, TopicPartition,
        },
    },
    rpc,
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
            if req.acks == Acks::All && lead.isr.len() < self.config.min_insync_replicas {
                return Err(ErrorCode::NotEnoughReplicas);
            }
            let epoch = lead.leader_epoch;
            let log = disk.logs.entry(req.tp.clone()).or_default();
            let check = match &req.stamp {
                Some(stamp) => log.check_sequence(stamp),
                None => SequenceCheck::New,
            };
            let offset = match check {
                SequenceCheck::New => {
                    log.append_as_leader(epoch, req.stamp, req.key, req.payload, req.headers)
                }
                SequenceCheck::Duplicate(offset) => {
                    self.counters
                        .duplicate_batches
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(broker = self.id, tp = %req.tp, offset, "duplicate batch dropped");
                    offset
                }
                SequenceCheck::OutOfOrder => return Err(ErrorCode::OutOfOrderSequence),
                SequenceCheck::StaleEpoch => return Err(ErrorCode::InvalidProducerEpoch),
            };
            update_high_watermark(&state, &mut disk, &req.tp, self.id);
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
                    if lead.isr.len() < self.config.min_insync_replicas {
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
                    .map(|(tp, offset)| FetchPartitionResponse {
                        tp: tp.clone(),
                        result: if !state.leading.contains_key(tp) {
                            Err(FetchError::Code(ErrorCode::NotLeaderOrFollower))
                        } else {
                            let log = disk.logs.get(tp);
                            let hw = log.map_or(0, |l| l.high_watermark());
                            let leo = log.map_or(0, |l| l.log_end_offset());
                            if *offset > leo || *offset < 0 {
                                Err(FetchError::OffsetOutOfRange { high_watermark: hw })
                            } else {
                                Ok(FetchedRecords {
                                    records: log.map_or_else(Vec::new, |l| {
                                        l.read(*offset, hw, req.records_max)
                                    }),
                                })
                            }
                        },
                    })
                    .collect()
            };
            let ready = responses
                .iter()
                .any(|r| !matches!(&r.result, Ok(f) if f.records.is_empty()));
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
                        });
                follower.log_end_offset = Some(p.fetch_offset);
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
                hw_moved |= update_high_watermark(&state, &mut disk, &r.tp, self.id);
                *high_watermark = disk.logs.get(&r.tp).map_or(0, |l| l.high_watermark());
            }
        }
        (responses, hw_moved)
    }

    /// Periodically proposes ISR changes: drop followers not caught up within
    /// `replica_lag_time_max_ms`, add back followers that reached the high watermark.
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
        let state = self.state();
        let disk = self.disk();
        let fenced = state
            .metadata
            .as_ref()
            .map(|m| m.fenced.clone())
            .unwrap_or_default();
        let mut proposals = Vec::new();
        for (tp, lead) in &state.leading {
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
            for (follower, progress) in &lead.followers {
                let in_isr = lead.isr.contains(follower);
                let caught_up = progress
                    .log_end_offset
                    .is_some_and(|leo| leo >= hw && leo >= epoch_start);
                if in_isr && now.duration_since(progress.last_caught_up) > lag_max {
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
        let reply: std::io::Result<ControllerResponse> = rpc::call(
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
            update_high_watermark(&state, &mut disk, &tp, self.id);
        }
        self.notify_progress();
    }
}
