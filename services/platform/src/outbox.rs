//! The outbox relay: drains committed outbox rows to the event log.
//!
//! Every instance of a service runs a relay, but only the holder of the store's
//! [`RELAY_LEASE`] sends (a lease with a fencing token, renewed while it is held), so rows are
//! relayed by one instance at a time and each key's rows stay in order. Each record carries
//! [`RELAY_LEASE_HEADER`] (`<instance>/<token>`), from which a checker can tell that no lease
//! token was ever used by two instances. The holder also removes sent rows and inbox marks
//! older than the retention.
//!
//! Rows are sent in commit order per key (a key's later rows wait until its earlier row is
//! acknowledged), marked sent after the acknowledgement, and kept. While the event log refuses
//! (broker down, `NOT_ENOUGH_REPLICAS`, partition) the relay backs off and retries; business
//! transactions never wait for it. A producer that fails for good (`EventLogError::Fatal`,
//! such as librdkafka's fatal idempotent-producer errors, after which every send fails) is
//! dropped and the next round makes a new one. A crash between acknowledgement and marking
//! re-sends the row: delivery is at least once, and consumers deduplicate on the `event-id`
//! header.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::{
    ports::{
        EventLog, EventLogError, OutboxRow, Platform, ProducedRecord, Producer, ProducerConfig,
    },
    worker::{run_rounds, Round},
    Shutdown,
};

/// Header carrying the event id on every record.
pub const EVENT_ID_HEADER: &str = "event-id";

/// Header carrying a fresh id per relay send: a re-send after a crash has a new one, while
/// a producer's internal retry of the same send keeps it (so a checker can tell a duplicate
/// batch in the log from an at-least-once re-send).
pub const SEND_ID_HEADER: &str = "send-id";

/// Header naming the relay instance and lease token that sent a record: `<instance>/<token>`.
pub const RELAY_LEASE_HEADER: &str = "relay-lease";

/// The store lease only one relay of a service holds at a time.
pub const RELAY_LEASE: &str = "outbox-relay";

/// Relay settings.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Rows read per round.
    pub batch_rows_max: usize,
    /// Poll interval when nothing wakes the relay (also how often a relay that does not hold
    /// the lease asks for it).
    pub idle_poll: Duration,
    /// How long the relay lease outlives its last renewal; renewed when half is spent before
    /// a round. Longer than two producer delivery timeouts, so a round that started with the
    /// lease ends before another instance can take it.
    pub lease: Duration,
    /// How long sent rows and inbox marks are kept (longer than the event log keeps records,
    /// so a redelivery still finds its mark).
    pub retention: Duration,
    /// How often the lease holder cleans up.
    pub cleanup_interval: Duration,
    /// The `work-without-claims` mutant: relay without the lease, on every instance at once.
    pub without_lease: bool,
    /// The `relay-drops-trace` mutant: records go out without their trace context.
    pub drop_trace: bool,
    /// Where the relay counts what it sends and finds waiting.
    pub metrics: Option<Arc<crate::metrics::Registry>>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_rows_max: 128,
            idle_poll: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(8 * 24 * 3600),
            cleanup_interval: Duration::from_secs(600),
            without_lease: false,
            drop_trace: false,
            metrics: None,
        }
    }
}

/// The relay's view of its lease: the token and until when it surely holds it.
#[derive(Default)]
struct HeldLease {
    held: Option<(i64, Instant)>,
    last_cleanup: Option<Instant>,
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

/// Runs the relay of instance `owner` until `shutdown`.
pub async fn run_relay(
    store: Arc<dyn Platform>,
    events: Arc<dyn EventLog>,
    producer_config: ProducerConfig,
    config: RelayConfig,
    owner: String,
    signal: OutboxSignal,
    shutdown: Shutdown,
) {
    let producer = ProducerSlot::default();
    let lease = Mutex::new(HeldLease::default());
    run_rounds(
        "outbox relay",
        config.idle_poll,
        signal.0.clone(),
        shutdown,
        || async {
            let Some(token) = hold_lease(&*store, &owner, &config, &lease).await? else {
                return Ok(Round::Idle);
            };
            let stamp = format!("{owner}/{token}");
            let p = || events.producer(producer_config.clone());
            let sent = relay_round(&*store, &producer, p, &config, &stamp).await;
            if let Some(m) = &config.metrics {
                let (pending, sent) = match &sent {
                    Ok(n) => (*n, *n),
                    Err(_) => (config.batch_rows_max, 0),
                };
                m.gauge(
                    "outbox_pending_rows",
                    "Rows the relay found waiting in its last round (at most one batch).",
                    &[],
                )
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
                m.counter("outbox_sent_total", "Outbox rows published to Kafka.", &[])
                    .add(sent as u64);
            }
            let sent = sent?;
            clean_up_when_due(&*store, &config, &lease).await;
            Ok(if sent > 0 { Round::Busy } else { Round::Idle })
        },
    )
    .await;
}

/// The relay lease's token if `owner` holds it (renewed when half of it is spent).
async fn hold_lease(
    store: &dyn Platform,
    owner: &str,
    config: &RelayConfig,
    lease: &Mutex<HeldLease>,
) -> anyhow::Result<Option<i64>> {
    if config.without_lease {
        return Ok(Some(0));
    }
    let now = Instant::now();
    let cached = lease.lock().ok().and_then(|l| l.held);
    if let Some((token, until)) = cached {
        if now + config.lease / 2 < until {
            return Ok(Some(token));
        }
    }
    let token = store
        .acquire_lease(RELAY_LEASE, owner, config.lease)
        .await?;
    if let Ok(mut l) = lease.lock() {
        l.held = token.map(|t| (t, now + config.lease));
    }
    Ok(token)
}

/// Removes old sent rows and inbox marks when the interval has passed (failures are retried
/// at the next interval: nothing depends on them).
async fn clean_up_when_due(store: &dyn Platform, config: &RelayConfig, lease: &Mutex<HeldLease>) {
    let due = lease.lock().ok().is_some_and(|l| {
        l.last_cleanup
            .is_none_or(|at| at.elapsed() >= config.cleanup_interval)
    });
    if !due {
        return;
    }
    if let Ok(mut l) = lease.lock() {
        l.last_cleanup = Some(Instant::now());
    }
    match store.cleanup(config.retention).await {
        Ok(cleaned) => tracing::debug!(?cleaned, "outbox and inbox cleaned up"),
        Err(e) => tracing::warn!(error = %e, "cleanup failed; retried at the next interval"),
    }
}

/// The relay's producer: made on first need (the cluster may be down at start) and kept
/// while it works; dropped after an error that leaves it broken for good (librdkafka's fatal
/// idempotent-producer errors: every later send fails), so the next round makes a new one.
#[derive(Default)]
struct ProducerSlot(Mutex<Option<Arc<dyn Producer>>>);

impl ProducerSlot {
    async fn get_or_make<F, Fut>(&self, make: F) -> Result<Arc<dyn Producer>, EventLogError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<dyn Producer>, EventLogError>>,
    {
        if let Some(p) = self.0.lock().ok().and_then(|p| p.clone()) {
            return Ok(p);
        }
        let p = make().await?;
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(p.clone());
        }
        Ok(p)
    }

    fn discard(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }
}

async fn relay_round<F, Fut>(
    store: &dyn Platform,
    producer: &ProducerSlot,
    make_producer: F,
    config: &RelayConfig,
    lease_stamp: &str,
) -> anyhow::Result<usize>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Producer>, EventLogError>>,
{
    let rows = store.outbox_pending(config.batch_rows_max).await?;
    if let Some(m) = &config.metrics {
        // Rows come oldest first; the store's clock stamped them, so the age is only as
        // good as the two clocks agree (never below zero).
        let now = i64::try_from(crate::store::now_ms()).unwrap_or(i64::MAX);
        let age = rows
            .first()
            .filter(|r| r.created_ms > 0)
            .map_or(0, |r| now.saturating_sub(r.created_ms).max(0));
        m.gauge(
            "outbox_oldest_row_age_milliseconds",
            "Age of the oldest outbox row waiting when the relay last looked (0: none).",
            &[],
        )
        .set(age);
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let p = producer.get_or_make(make_producer).await?;
    // Keys are sent concurrently, each key's rows strictly in order.
    let mut by_key: Vec<(String, Vec<OutboxRow>)> = Vec::new();
    for row in rows {
        match by_key.iter_mut().find(|(k, _)| *k == row.message.key) {
            Some((_, v)) => v.push(row),
            None => by_key.push((row.message.key.clone(), vec![row])),
        }
    }
    let drop_trace = config.drop_trace;
    let results = futures::future::join_all(by_key.into_iter().map(|(_, rows)| {
        let p = p.clone();
        async move {
            let mut acked = Vec::new();
            for row in rows {
                let mut record = to_record(&row);
                if drop_trace {
                    record.headers.retain(|(k, _)| {
                        k != crate::trace::TRACEPARENT && k != crate::trace::TRACESTATE
                    });
                }
                let send_id = crate::ids::uuid_v4().to_string();
                record.headers.push((SEND_ID_HEADER.to_owned(), send_id));
                record
                    .headers
                    .push((RELAY_LEASE_HEADER.to_owned(), lease_stamp.to_owned()));
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
        if let Some(e @ EventLogError::Fatal(_)) = &err {
            tracing::warn!(error = %e, "the relay's producer is broken for good; making a new one");
            producer.discard();
        }
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
