//! The follower's side: one replica fetcher per source broker (as Kafka runs one fetcher
//! thread per leader), fetching every partition this broker follows there in one request,
//! truncating where the leader reports divergence (KIP-320's last-fetched-epoch check), and
//! appending what the leader returns.

use madsim::time;

use super::Broker;
use crate::kafka::{
    net,
    protocol::{
        BrokerId, BrokerRequest, BrokerResponse, ReplicaFetchPartition, ReplicaFetchRequest,
        ReplicaFetched,
    },
};

impl Broker {
    /// Replicates from `source` whatever this broker follows there, until the node dies.
    pub(super) async fn replica_fetcher(&self, source: BrokerId) {
        let Some(addr) = self.config.broker_addr(source) else {
            return;
        };
        loop {
            let partitions = self.partitions_to_fetch(source);
            if partitions.is_empty() {
                // Nothing to follow there: wait for a role change (or poll slowly).
                let seen = self.progress.version();
                let _ = time::timeout(
                    self.config.replica_fetch_backoff(),
                    self.progress.changed_since(seen),
                )
                .await;
                continue;
            }
            let req = ReplicaFetchRequest {
                replica: self.id,
                wait_max_ms: self.config.replica_fetch_wait_max_ms,
                records_max: self.config.replica_fetch_records_max,
                partitions,
            };
            let timeout =
                self.config.replica_fetch_wait_max() + self.config.replica_fetch_timeout();
            let reply: std::io::Result<BrokerResponse> =
                net::call(addr, BrokerRequest::ReplicaFetch(req), timeout).await;
            match reply {
                Ok(BrokerResponse::ReplicaFetch(responses)) => {
                    let errors = self.apply_fetched(source, responses);
                    if errors {
                        time::sleep(self.config.replica_fetch_backoff()).await;
                    }
                }
                Ok(_) => {
                    tracing::error!(
                        broker = self.id,
                        source,
                        "unexpected reply to a replica fetch"
                    );
                    time::sleep(self.config.replica_fetch_backoff()).await;
                }
                Err(e) => {
                    tracing::debug!(broker = self.id, source, error = %e, "replica fetch failed");
                    time::sleep(self.config.replica_fetch_backoff()).await;
                }
            }
        }
    }

    fn partitions_to_fetch(&self, source: BrokerId) -> Vec<ReplicaFetchPartition> {
        let state = self.state();
        let mut disk = self.disk();
        state
            .following
            .iter()
            .filter(|(_, f)| f.leader == source)
            .map(|(tp, f)| {
                let log = disk.logs.entry(tp.clone()).or_default();
                ReplicaFetchPartition {
                    tp: tp.clone(),
                    leader_epoch: f.leader_epoch,
                    fetch_offset: log.log_end_offset(),
                    last_fetched_epoch: log.last_epoch(),
                    high_watermark: log.high_watermark(),
                }
            })
            .collect()
    }

    /// Applies a fetch response; returns whether any partition reported an error.
    fn apply_fetched(
        &self,
        source: BrokerId,
        responses: Vec<crate::kafka::protocol::ReplicaFetchPartitionResponse>,
    ) -> bool {
        let mut errors = false;
        {
            let state = self.state();
            let mut disk = self.disk();
            for r in responses {
                // Ignore answers for partitions this broker no longer follows from `source`.
                if state
                    .following
                    .get(&r.tp)
                    .is_none_or(|f| f.leader != source)
                {
                    continue;
                }
                let log = disk.logs.entry(r.tp.clone()).or_default();
                match r.result {
                    Ok(ReplicaFetched::Records {
                        records,
                        high_watermark,
                    }) => {
                        log.append_replicated(time::Instant::now(), records);
                        log.advance_high_watermark(high_watermark);
                    }
                    Ok(ReplicaFetched::Diverging { epoch, end_offset }) => {
                        // Truncate to where both logs last agree: the end of `epoch` on the
                        // leader and here, whichever is smaller (KIP-279).
                        let own_end = match epoch {
                            Some(e) => log.epoch_end_offset(e).1,
                            None => 0,
                        };
                        let to = end_offset.min(own_end);
                        tracing::info!(
                            broker = self.id, tp = %r.tp, from = log.log_end_offset(), to,
                            "truncating diverging log"
                        );
                        log.truncate_to(to);
                    }
                    Err(code) => {
                        tracing::debug!(broker = self.id, tp = %r.tp, %code, "replica fetch refused");
                        errors = true;
                    }
                }
            }
        }
        self.notify_progress();
        errors
    }
}
