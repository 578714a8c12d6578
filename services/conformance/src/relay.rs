//! The outbox relay over any event log: when its producer breaks for good — as librdkafka's
//! does after a fatal idempotent-producer error (`OUT_OF_ORDER_SEQUENCE`, `UNKNOWN_PRODUCER_ID`
//! after retries): every later send fails — the relay makes a new producer and the outbox
//! still drains, every event on the topic, each relay send once. The break is made at the
//! port (a wrapper that fails every send of the first producer after a few), because nothing
//! safe drives a real librdkafka producer into its fatal state on demand. The topic must exist.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use platform::{
    outbox::{run_relay, OutboxSignal, RelayConfig, EVENT_ID_HEADER, SEND_ID_HEADER},
    ports::{
        Consumer, ConsumerConfig, EventLog, EventLogError, OutboxMessage, Platform, ProducedRecord,
        Producer, ProducerConfig, RecordAck, Store, Tx,
    },
    store::{kv::KvSchema, MemoryStore},
    Shutdown,
};

/// Events committed to the outbox.
const EVENTS: usize = 40;
/// Keys they spread over (each key's events in order).
const KEYS: usize = 4;
/// Sends the first producer acknowledges before it breaks.
const SENDS_BEFORE_BREAKING: usize = 10;
/// Bound on draining and on reading back.
const DEADLINE: Duration = Duration::from_secs(60);

/// An event log whose first producer breaks for good after `SENDS_BEFORE_BREAKING` sends.
struct BreakingLog {
    inner: Arc<dyn EventLog>,
    producers: AtomicUsize,
}

struct BreakingProducer {
    inner: Arc<dyn Producer>,
    /// Sends left before it is broken; `None`: it never breaks.
    sends: Option<AtomicUsize>,
}

#[async_trait]
impl Producer for BreakingProducer {
    async fn send(&self, record: ProducedRecord) -> Result<RecordAck, EventLogError> {
        if let Some(left) = &self.sends {
            let ok = left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if !ok {
                return Err(EventLogError::Fatal(
                    "send: Local: Fatal error (the producer is broken for good)".into(),
                ));
            }
        }
        self.inner.send(record).await
    }
}

#[async_trait]
impl EventLog for BreakingLog {
    async fn producer(&self, config: ProducerConfig) -> Result<Arc<dyn Producer>, EventLogError> {
        let first = self.producers.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(Arc::new(BreakingProducer {
            inner: self.inner.producer(config).await?,
            sends: first.then(|| AtomicUsize::new(SENDS_BEFORE_BREAKING)),
        }))
    }

    async fn consumer(
        &self,
        config: ConsumerConfig,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, EventLogError> {
        self.inner.consumer(config, topics).await
    }
}

/// The relay's producer breaks for good after a few sends; the relay replaces it and every
/// committed event reaches `topic`, each relay send once.
pub async fn the_relay_replaces_a_producer_broken_for_good_and_drains_the_outbox(
    log: Arc<dyn EventLog>,
    topic: &str,
    group: &str,
) {
    let store = Arc::new(MemoryStore::<KvSchema>::default());
    let mut committed = BTreeSet::new();
    for i in 0..EVENTS {
        let event_id = format!("{group}-ev-{i}");
        let key = format!("key-{}", i % KEYS);
        store
            .commit(Tx::new().emit(OutboxMessage {
                event_id: event_id.clone(),
                topic: topic.into(),
                key,
                payload: serde_json::json!({ "step": i }),
                headers: vec![],
            }))
            .await
            .expect("commit");
        committed.insert(event_id);
    }
    let breaking = Arc::new(BreakingLog {
        inner: log.clone(),
        producers: AtomicUsize::new(0),
    });
    let signal = OutboxSignal::default();
    let (trigger, shutdown) = Shutdown::new();
    let relay = tokio::spawn(run_relay(
        store.clone(),
        breaking.clone(),
        ProducerConfig::default(),
        RelayConfig {
            // Small rounds, so the break falls mid-drain.
            batch_rows_max: 8,
            idle_poll: Duration::from_millis(100),
            ..RelayConfig::default()
        },
        "conformance-relay".into(),
        signal.clone(),
        shutdown,
    ));
    signal.notify();
    let started = Instant::now();
    loop {
        let pending = store.outbox_pending(1).await.expect("outbox");
        if pending.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the outbox did not drain within {DEADLINE:?} after its producer broke \
             ({} producers made)",
            breaking.producers.load(Ordering::SeqCst)
        );
        signal.notify();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    trigger.trigger();
    let _ = relay.await;
    assert!(
        breaking.producers.load(Ordering::SeqCst) >= 2,
        "the relay drained without replacing its broken producer?"
    );

    // Read it all back with a fresh group: every committed event, each relay send once.
    let mut reader = log
        .consumer(ConsumerConfig::new(format!("{group}-reader")), &[topic])
        .await
        .expect("reader");
    let mut sends_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let started = Instant::now();
    loop {
        let batch = reader
            .poll(Duration::from_millis(500))
            .await
            .unwrap_or_default();
        for r in &batch {
            let (Some(event), Some(send)) = (r.header(EVENT_ID_HEADER), r.header(SEND_ID_HEADER))
            else {
                panic!("a relayed record without its event and send ids: {r:?}");
            };
            sends_of
                .entry(event.to_owned())
                .or_default()
                .push(send.to_owned());
        }
        let all = sends_of.len() == committed.len();
        if all && batch.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "read back {} of {} events within {DEADLINE:?}",
            sends_of.len(),
            committed.len()
        );
    }
    let on_topic: BTreeSet<String> = sends_of.keys().cloned().collect();
    assert_eq!(on_topic, committed, "every committed event on the topic");
    for (event, sends) in &sends_of {
        let distinct: BTreeSet<&String> = sends.iter().collect();
        assert_eq!(
            distinct.len(),
            sends.len(),
            "event {event} written twice by one relay send: {sends:?}"
        );
    }
}
