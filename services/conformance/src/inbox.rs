//! The inbox consumer loop over any event log: a record its effect can never process, and a
//! record whose processing keeps failing (after its bounded attempts), go to the topic's
//! dead-letter topic (`<topic>.dlq`) with why and whence, and the records around them take
//! effect. Runs against the real cluster and the Kafka model; the topic and its
//! `.dlq` must exist.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::json;
use tokio::time::Instant;

use platform::{
    inbox::{
        run_consumer, ConsumerSettings, Effect, EffectError, DLQ_CONSUMER_HEADER,
        DLQ_ORIGIN_HEADER, DLQ_REASON_HEADER,
    },
    outbox::EVENT_ID_HEADER,
    ports::{ConsumedRecord, ConsumerConfig, EventLog, ProducedRecord, ProducerConfig, Store, Tx},
    store::{
        kv::{KvQuery, KvSchema, KvTx},
        MemoryStore,
    },
    topics, Shutdown,
};

/// Bound on waiting for the effects and the dead letter.
const DEADLINE: Duration = Duration::from_secs(60);

/// Deliveries a failing record gets before it is dead-lettered.
const ATTEMPTS: u32 = 3;

/// Records `{"n": N}` count as seen; `{"fail": true}` fails every time (counted in
/// `failures`); anything else is poison.
fn effect(failures: Arc<AtomicU32>) -> Effect<KvSchema> {
    Arc::new(move |r: ConsumedRecord, _store: Arc<dyn Store<KvSchema>>| {
        let failures = failures.clone();
        Box::pin(async move {
            let v: serde_json::Value = serde_json::from_slice(&r.payload)
                .map_err(|e| EffectError::Poison(format!("not a counter event: {e}")))?;
            if v.get("fail").is_some() {
                let n = failures.fetch_add(1, Ordering::SeqCst) + 1;
                return Err(EffectError::Failed(anyhow::anyhow!("attempt {n} failed")));
            }
            let n = v
                .get("n")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| EffectError::Poison("not a counter event: no n".into()))?;
            Ok(Some(Tx::new().put(
                "seen",
                &format!("n{n}"),
                json!(n),
                false,
            )))
        })
    })
}

async fn seen(store: &MemoryStore<KvSchema>, n: i64) -> bool {
    store
        .query(KvQuery::Get {
            table: "seen".into(),
            key: format!("n{n}"),
        })
        .await
        .is_ok_and(|v| v.is_some())
}

/// Between two good records of one key, a record that does not decode and one whose effect
/// fails every time: the good ones take effect; the bad ones land once each in
/// `<topic>.dlq` with their payload, event id, reason, origin (`topic/partition/offset`) and
/// the group that gave up on them — the failing one after exactly [`ATTEMPTS`] deliveries.
pub async fn bad_records_are_dead_lettered_and_the_records_around_them_take_effect(
    log: Arc<dyn EventLog>,
    topic: &str,
    group: &str,
) {
    let producer = log
        .producer(ProducerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let mut acks = Vec::new();
    let payloads = ["{\"n\":1}", "not json", "{\"fail\":true}", "{\"n\":2}"];
    for (i, payload) in payloads.iter().enumerate() {
        let record = ProducedRecord {
            topic: topic.into(),
            key: "k".into(),
            payload: payload.as_bytes().to_vec(),
            headers: vec![(EVENT_ID_HEADER.into(), format!("e-{i}"))],
        };
        acks.push(
            producer
                .send(record)
                .await
                .unwrap_or_else(|e| panic!("send {payload}: {e}")),
        );
    }

    let store = MemoryStore::<KvSchema>::default();
    let failures = Arc::new(AtomicU32::new(0));
    let (trigger, shutdown) = Shutdown::new();
    let consumer = tokio::spawn(run_consumer(
        Arc::new(store.clone()),
        log.clone(),
        ConsumerSettings {
            consumer: ConsumerConfig::new(group),
            topics: vec![topic.into()],
            producer: ProducerConfig::default(),
            inbox: true,
            attempts_max: Some(ATTEMPTS),
            lookup_first: false,
            lanes: platform::inbox::Lanes::One,
            metrics: None,
        },
        effect(failures.clone()),
        shutdown,
    ));

    let started = Instant::now();
    while !(seen(&store, 1).await && seen(&store, 2).await) {
        assert!(
            started.elapsed() < DEADLINE,
            "the records around the poison must take effect within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dlq = topics::dlq(topic);
    let mut reader = log
        .consumer(ConsumerConfig::new(format!("{group}-dlq-reader")), &[&dlq])
        .await
        .unwrap_or_else(|e| panic!("reading {dlq}: {e}"));
    let mut letters = Vec::new();
    while letters.len() < 2 {
        assert!(
            started.elapsed() < DEADLINE,
            "the two bad records must reach {dlq} within {DEADLINE:?}: {letters:?}"
        );
        if let Ok(batch) = reader.poll(Duration::from_millis(500)).await {
            letters.extend(batch);
        }
    }
    trigger.trigger();
    let _ = consumer.await;

    assert_eq!(
        letters.len(),
        2,
        "one dead letter per bad record: {letters:?}"
    );
    letters.sort_by_key(|l| l.header(EVENT_ID_HEADER).map(str::to_owned));
    let letter = &letters[0];
    assert_eq!(letter.payload, b"not json", "the payload is kept");
    assert_eq!(letter.key, "k");
    assert_eq!(letter.header(EVENT_ID_HEADER), Some("e-1"));
    assert!(
        letter
            .header(DLQ_REASON_HEADER)
            .is_some_and(|r| r.contains("not a counter event")),
        "the reason is said: {:?}",
        letter.header(DLQ_REASON_HEADER)
    );
    assert_eq!(
        letter.header(DLQ_ORIGIN_HEADER),
        Some(format!("{topic}/{}/{}", acks[1].partition, acks[1].offset).as_str()),
        "the origin is the poison record's place"
    );
    assert_eq!(letter.header(DLQ_CONSUMER_HEADER), Some(group));

    let failing = &letters[1];
    assert_eq!(failing.header(EVENT_ID_HEADER), Some("e-2"));
    assert_eq!(
        failures.load(Ordering::SeqCst),
        ATTEMPTS,
        "the failing record is delivered {ATTEMPTS} times, no more"
    );
    assert!(
        failing
            .header(DLQ_REASON_HEADER)
            .is_some_and(|r| r.contains(&format!("failed {ATTEMPTS} times"))
                && r.contains(&format!("attempt {ATTEMPTS} failed"))),
        "the reason gives the count and the last failure: {:?}",
        failing.header(DLQ_REASON_HEADER)
    );
    assert_eq!(
        failing.header(DLQ_ORIGIN_HEADER),
        Some(format!("{topic}/{}/{}", acks[2].partition, acks[2].offset).as_str()),
    );
}
