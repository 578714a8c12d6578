//! The outbox relay: drains committed outbox rows to the event log.
//!
//! Rows are sent in commit order per key (a key's later rows wait until its earlier row is
//! acknowledged), marked sent after the acknowledgement, and kept. While the event log refuses
//! (broker down, `NOT_ENOUGH_REPLICAS`, partition) the relay backs off and retries; business
//! transactions never wait for it. A crash between acknowledgement and marking re-sends the
//! row: delivery is at least once, and consumers deduplicate on the `event-id` header.

use std::{sync::Arc, time::Duration};

use tokio::sync::{Notify, OnceCell};

use crate::{
    ports::{EventLog, OutboxRow, ProducedRecord, Producer, ProducerConfig, Store},
    worker::{run_rounds, Round},
    Shutdown,
};

/// Header carrying the event id on every record.
pub const EVENT_ID_HEADER: &str = "event-id";

/// Header carrying a fresh id per relay send: a re-send after a crash has a new one, while
/// a producer's internal retry of the same send keeps it (so a checker can tell a duplicate
/// batch in the log from an at-least-once re-send).
pub const SEND_ID_HEADER: &str = "send-id";

/// Relay settings.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Rows read per round.
    pub batch_rows_max: usize,
    /// Poll interval when nothing wakes the relay.
    pub idle_poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_rows_max: 128,
            idle_poll: Duration::from_millis(500),
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
    // The producer is made on first need (the cluster may be down at start) and kept.
    let producer: OnceCell<Arc<dyn Producer>> = OnceCell::new();
    run_rounds(
        "outbox relay",
        config.idle_poll,
        signal.0.clone(),
        shutdown,
        || async {
            let p = || events.producer(producer_config.clone());
            let sent = relay_round(&*store, &producer, p, config.batch_rows_max).await?;
            Ok(if sent > 0 { Round::Busy } else { Round::Idle })
        },
    )
    .await;
}

async fn relay_round<F, Fut>(
    store: &dyn Store,
    producer: &OnceCell<Arc<dyn Producer>>,
    make_producer: F,
    batch_rows_max: usize,
) -> anyhow::Result<usize>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Producer>, crate::ports::EventLogError>>,
{
    let rows = store.outbox_pending(batch_rows_max).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let p = producer.get_or_try_init(make_producer).await?.clone();
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
                let mut record = to_record(&row);
                let send_id = crate::ids::uuid_v4().to_string();
                record.headers.push((SEND_ID_HEADER.to_owned(), send_id));
                match p.send(record).await {
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
    if !acked.is_empty() {
        store.outbox_mark_sent(&acked).await?;
    }
    // Some keys made progress: report it (the failed keys are retried next round).
    match first_error {
        Some(e) if acked.is_empty() => Err(e.into()),
        _ => Ok(acked.len()),
    }
}
