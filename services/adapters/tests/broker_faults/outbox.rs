//! Below `min.insync.replicas` producers are refused and the outbox holds the events until
//! the cluster heals. Model counterpart:
//! `producers_get_not_enough_replicas_with_two_brokers_down_and_succeed_after_restart`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use platform::{
    outbox::{run_relay, OutboxSignal, RelayConfig, EVENT_ID_HEADER, SEND_ID_HEADER},
    ports::{
        Consumer, ConsumerConfig, EventLog, EventLogError, OutboxMessage, ProducedRecord, Producer,
        ProducerConfig, RecordAck, Store, Tx,
    },
    Shutdown,
};
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
    util::Timeout,
    ClientConfig,
};
use tokio::time::Instant;

use crate::{
    brokers::Outage,
    support::{
        below_watermarks, drop_store, exclusive, fresh_store, fresh_topic, kafka, kafka_bootstrap,
        producer_config, read_until, record, step, unique, Cluster, HEAL_DEADLINE, POLL_INTERVAL,
    },
};

/// The broker left running (msk, like the model's `msk-1`); 2 (msk) and 3 (nsk) are killed.
const SURVIVOR: i32 = 1;
const KILLED: [i32; 2] = [2, 3];

/// Events committed while the cluster refuses writes, over a few keys.
const EVENTS: usize = 24;
const KEYS: usize = 6;

/// Relay rounds that must fail (every key refused) before the outbox is judged "held".
const REFUSED_ROUNDS: usize = 2;

/// Bound on the outbox draining after the brokers are back.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// What every producer made through [`Counting`] saw.
#[derive(Default, Debug)]
struct SendLog {
    acked: usize,
    refused: Vec<EventLogError>,
}

/// An [`EventLog`] that counts the outcomes of its producers' sends (to wait on the relay
/// having tried and been refused, instead of sleeping).
struct Counting {
    inner: Arc<dyn EventLog>,
    sends: Arc<Mutex<SendLog>>,
}

struct CountingProducer {
    inner: Arc<dyn Producer>,
    sends: Arc<Mutex<SendLog>>,
}

#[async_trait]
impl Producer for CountingProducer {
    async fn send(&self, record: ProducedRecord) -> Result<RecordAck, EventLogError> {
        let result = self.inner.send(record).await;
        let mut s = self.sends.lock().expect("send log");
        match &result {
            Ok(_) => s.acked += 1,
            Err(e) => s.refused.push(e.clone()),
        }
        result
    }
}

#[async_trait]
impl EventLog for Counting {
    async fn producer(&self, config: ProducerConfig) -> Result<Arc<dyn Producer>, EventLogError> {
        Ok(Arc::new(CountingProducer {
            inner: self.inner.producer(config).await?,
            sends: self.sends.clone(),
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

/// An error's variant, without its detail.
fn variant(e: &EventLogError) -> &'static str {
    match e {
        EventLogError::NotEnoughReplicas => "NotEnoughReplicas",
        EventLogError::Timeout(_) => "Timeout",
        EventLogError::Unavailable(_) => "Unavailable",
        EventLogError::Fenced => "Fenced",
        EventLogError::UnknownTopic(_) => "UnknownTopic",
        EventLogError::Fatal(_) => "Fatal",
    }
}

/// Two brokers SIGKILLed: once the metadata shows every partition led by the survivor alone
/// in its ISR, a producer with a short delivery timeout is refused (retriably). Events
/// committed to a Postgres outbox meanwhile stay pending while the relay keeps trying; after
/// both brokers restart the outbox drains, and the topic holds exactly the committed event
/// ids — a repeated event id only as a separate relay send (its own `send-id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal() {
    let x = exclusive(
        "with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal",
    )
    .await;
    let mut outage = Outage::new();
    let log = Arc::new(kafka().await);
    let cluster = Cluster::new();
    let partitions = 3;
    let topic = fresh_topic(&log, &cluster, "bf-outbox", partitions).await;
    let store = fresh_store().await;

    for n in KILLED {
        outage.kill(n).await;
    }
    step(&x, format!("killed brokers {KILLED:?}"));
    cluster
        .wait_until(
            &format!("every partition of {topic} is led by broker {SURVIVOR} alone in its ISR"),
            Duration::from_secs(60),
            Some(&topic),
            |s| {
                let ps: Vec<_> = s.partitions.iter().filter(|p| p.topic == topic).collect();
                ps.len() == partitions as usize
                    && ps
                        .iter()
                        .all(|p| p.leader == SURVIVOR && p.isr == [SURVIVOR])
            },
        )
        .await;
    step(&x, format!("every ISR of {topic} shrank to [{SURVIVOR}]"));

    let probe = log
        .producer(producer_config(
            Duration::from_secs(3),
            Duration::from_secs(1),
        ))
        .await
        .expect("producer");
    let refused = probe
        .send(record(&topic, "probe", "probe"))
        .await
        .expect_err("a write to a partition with one in-sync replica (min 2) must be refused");
    step(&x, format!("a direct send was refused with {refused:?}"));
    assert!(
        matches!(
            refused,
            EventLogError::NotEnoughReplicas | EventLogError::Timeout(_)
        ) && refused.is_retriable(),
        "below min.insync.replicas a send must fail with NotEnoughReplicas or Timeout \
         (retriable), got {refused:?}"
    );

    // The broker's own answer, seen with librdkafka's retries off (the seed's idempotent
    // producer retries it until its delivery timeout, hence the Timeout above).
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("a producer without retries");
    let answer = raw
        .send(
            FutureRecord::to(&topic).key("probe").payload("raw-probe"),
            Timeout::After(Duration::from_secs(5)),
        )
        .await;
    let code = match answer {
        Err((KafkaError::MessageProduction(code), _)) => code,
        other => panic!("a send without retries must be refused by the broker, got {other:?}"),
    };
    step(&x, format!("the broker itself answered {code:?}"));
    assert!(
        matches!(
            code,
            RDKafkaErrorCode::NotEnoughReplicas | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
        ),
        "below min.insync.replicas the leader must answer NOT_ENOUGH_REPLICAS, got {code:?}"
    );

    // Business transactions commit while the cluster refuses writes.
    let mut committed = BTreeSet::new();
    for i in 0..EVENTS {
        let key = format!("order-{}", i % KEYS);
        let event_id = unique("ev");
        store
            .commit(
                Tx::new()
                    .put("orders", &key, serde_json::json!({ "step": i }), true)
                    .emit(OutboxMessage {
                        event_id: event_id.clone(),
                        topic: topic.clone(),
                        key: key.clone(),
                        payload: serde_json::json!({ "order": key, "step": i }),
                        headers: vec![],
                    }),
            )
            .await
            .expect("a business transaction commits while Kafka refuses writes");
        committed.insert(event_id);
    }

    let sends = Arc::new(Mutex::new(SendLog::default()));
    let events: Arc<dyn EventLog> = Arc::new(Counting {
        inner: log.clone(),
        sends: sends.clone(),
    });
    let store_port: Arc<dyn Store> = Arc::new(store.clone());
    let signal = OutboxSignal::default();
    let (trigger, shutdown) = Shutdown::new();
    let relay = tokio::spawn(run_relay(
        store_port.clone(),
        events,
        producer_config(Duration::from_secs(3), Duration::from_secs(1)),
        RelayConfig {
            idle_poll: Duration::from_millis(200),
            ..RelayConfig::default()
        },
        signal.clone(),
        shutdown,
    ));
    signal.notify();

    // The relay tries (the first row of every key per round) and is refused; nothing drains.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (acked, refused) = {
            let s = sends.lock().expect("send log");
            (s.acked, s.refused.len())
        };
        assert_eq!(
            acked, 0,
            "a relay send was acknowledged with one in-sync replica"
        );
        let pending = store
            .outbox_pending(EVENTS * 2)
            .await
            .expect("outbox_pending");
        assert_eq!(
            pending.len(),
            EVENTS,
            "with two brokers down the outbox must keep every event pending"
        );
        if refused >= REFUSED_ROUNDS * KEYS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay made {refused} refused sends in 45 s, wanted {}",
            REFUSED_ROUNDS * KEYS
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let relay_variants: BTreeMap<&str, usize> = sends
        .lock()
        .expect("send log")
        .refused
        .iter()
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(variant(e)).or_default() += 1;
            m
        });
    step(
        &x,
        format!("outbox holds all {EVENTS}; relay refused with {relay_variants:?}"),
    );
    assert!(
        sends
            .lock()
            .expect("send log")
            .refused
            .iter()
            .all(|e| e.is_retriable()),
        "every refusal below min ISR must be retriable: {:?}",
        sends.lock().expect("send log").refused
    );

    outage.heal().await;
    step(&x, format!("restarted brokers {KILLED:?}"));
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let pending = store
            .outbox_pending(EVENTS * 2)
            .await
            .expect("outbox_pending");
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} events still pending {DRAIN_DEADLINE:?} after the brokers came back",
            pending.len()
        );
        signal.notify();
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let (acked, refused) = {
        let s = sends.lock().expect("send log");
        (s.acked, s.refused.len())
    };
    step(
        &x,
        format!("outbox drained; relay sends: {acked} acknowledged, {refused} refused"),
    );
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(30), relay)
        .await
        .expect("the relay stops on shutdown")
        .expect("relay task");
    cluster
        .wait_healthy("the restarted brokers are back in every ISR", HEAL_DEADLINE)
        .await;
    step(&x, "every ISR full again");

    let high = cluster.high_watermarks(&topic, partitions).await;
    let read = read_until(
        log.as_ref(),
        ConsumerConfig::new(unique("bf_outbox")),
        &topic,
        &below_watermarks(&high),
        "a new group after the heal",
    )
    .await;
    // Each position once; the probe (no event id) may or may not have been written.
    let mut by_position = BTreeMap::new();
    for r in &read {
        by_position.insert((r.partition, r.offset), r);
    }
    let mut sends_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in by_position.values() {
        if let Some(event_id) = r.header(EVENT_ID_HEADER) {
            let send_id = r
                .header(SEND_ID_HEADER)
                .unwrap_or_else(|| panic!("relayed record without {SEND_ID_HEADER}: {r:?}"));
            sends_of
                .entry(event_id.to_owned())
                .or_default()
                .push(send_id.to_owned());
        }
    }
    let on_topic: BTreeSet<String> = sends_of.keys().cloned().collect();
    assert_eq!(
        on_topic, committed,
        "the topic must hold exactly the committed event ids"
    );
    let mut resent = 0;
    for (event_id, send_ids) in &sends_of {
        let distinct: BTreeSet<_> = send_ids.iter().collect();
        assert_eq!(
            distinct.len(),
            send_ids.len(),
            "event {event_id} is on the topic twice from one relay send (a producer duplicate): \
             {send_ids:?}"
        );
        resent += send_ids.len() - 1;
    }
    step(
        &x,
        format!(
            "topic holds all {EVENTS} event ids; {resent} extra copies, each a separate relay send"
        ),
    );
    drop_store(store).await;
    log.delete_topic(&topic).await.expect("delete topic");
}
