//! The outbox relay: drains committed outbox rows to the event log.
//!
//! Rows are sent in commit order per key (a key's later rows wait until its earlier row is
//! acknowledged), marked sent after the acknowledgement, and kept. While the event log refuses
//! (broker down, `NOT_ENOUGH_REPLICAS`, partition) the relay backs off and retries; business
//! transactions never wait for it. A crash between acknowledgement and marking re-sends the
//! row: delivery is at least once, and consumers deduplicate on the `event-id` header.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::Notify;

use crate::{
    ports::{EventLog, OutboxRow, ProducedRecord, Producer, ProducerConfig, Store},
    retry::RetryPolicy,
    Shutdown,
};

/// Header carrying the event id on every record.
pub const EVENT_ID_HEADER: &str = "event-id";

/// Relay settings.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Rows read per round.
    pub batch_rows_max: usize,
    /// Poll interval when nothing wakes the relay.
    pub idle_poll: Duration,
    /// Backoff while the event log or the store fails.
    pub backoff: RetryPolicy,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_rows_max: 128,
            idle_poll: Duration::from_millis(500),
            backoff: RetryPolicy::forever(Duration::from_millis(100), Duration::from_secs(2)),
        }
    }
}

/// Wakes the relay right after a commit that wrote outbox rows.
#[derive(Clone, Debug, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    /// Tell the relay there is work.
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// The record a row becomes.
pub fn to_record(row: &OutboxRow) -> ProducedRecord {
    let m = &row.message;
    let mut headers = vec![(EVENT_ID_HEADER.to_owned(), m.event_id.clone())];
    headers.extend(m.headers.iter().cloned());
    ProducedRecord {
        topic: m.topic.clone(),
        key: m.key.clone(),
        payload: serde_json::to_vec(&m.payload).unwrap_or_default(),
        headers,
    }
}

/// Runs the relay until `shutdown`.
pub async fn run_relay(
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    producer_config: ProducerConfig,
    config: RelayConfig,
    signal: OutboxSignal,
    shutdown: Shutdown,
) {
    let mut producer: Option<Arc<dyn Producer>> = None;
    let mut failures = 0u32;
    loop {
        if shutdown.is_requested() {
            return;
        }
        let outcome =
            relay_round(&*store, &*events, &producer_config, &mut producer, &config).await;
        let wait = match outcome {
            Ok(RoundOutcome { sent, complete }) => {
                failures = 0;
                if sent > 0 && !complete {
                    continue;
                }
                if sent > 0 {
                    Duration::ZERO
                } else {
                    config.idle_poll
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, failures, "outbox relay round failed");
                config.backoff.delay(failures)
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
        biased;
            _ = tokio::time::sleep(wait) => {}
            _ = signal.0.notified(), if failures == 0 => {}
            _ = shutdown.wait() => return,
        }
    }
}

struct RoundOutcome {
    sent: usize,
    /// Every pending row seen was sent (none held back by a failure).
    complete: bool,
}

async fn relay_round(
    store: &dyn Store,
    events: &dyn EventLog,
    producer_config: &ProducerConfig,
    producer: &mut Option<Arc<dyn Producer>>,
    config: &RelayConfig,
) -> anyhow::Result<RoundOutcome> {
    let rows = store.outbox_pending(config.batch_rows_max).await?;
    if rows.is_empty() {
        return Ok(RoundOutcome {
            sent: 0,
            complete: true,
        });
    }
    let p = match producer {
        Some(p) => p.clone(),
        None => {
            let p = events.producer(producer_config.clone()).await?;
            *producer = Some(p.clone());
            p
        }
    };
    // Keys are sent concurrently, each key's rows strictly in order.
    let mut by_key: Vec<(String, Vec<OutboxRow>)> = Vec::new();
    for row in rows {
        match by_key.iter_mut().find(|(k, _)| *k == row.message.key) {
            Some((_, v)) => v.push(row),
            None => by_key.push((row.message.key.clone(), vec![row])),
        }
    }
    let results = futures::future::join_all(by_key.into_iter().map(|(_, rows)| {
        let p = p.clone();
        async move {
            let mut acked = Vec::new();
            for row in rows {
                match p.send(to_record(&row)).await {
                    Ok(_) => acked.push(row.id),
                    Err(e) => return (acked, Some(e)),
                }
            }
            (acked, None)
        }
    }))
    .await;
    let mut acked = Vec::new();
    let mut first_error = None;
    for (ids, err) in results {
        acked.extend(ids);
        if first_error.is_none() {
            first_error = err;
        }
    }
    let unique: HashSet<i64> = acked.iter().copied().collect();
    if !acked.is_empty() {
        store.outbox_mark_sent(&acked).await?;
    }
    match first_error {
        Some(e) if unique.is_empty() => Err(e.into()),
        Some(_) => Ok(RoundOutcome {
            sent: unique.len(),
            complete: false,
        }),
        None => Ok(RoundOutcome {
            sent: unique.len(),
            complete: true,
        }),
    }
}
