//! The inbox consumer loop over any event log: a record its effect can never process goes to
//! the topic's dead-letter topic (`<topic>.dlq`) with why and whence, and the records around
//! it take effect. Runs against the real cluster and the Kafka model; the topic and its
//! `.dlq` must exist.

use std::{sync::Arc, time::Duration};

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

/// Records `{"n": N}` count as seen; anything else is poison.
fn effect() -> Effect<KvSchema> {
    Arc::new(|r: ConsumedRecord, _store: Arc<dyn Store<KvSchema>>| {
        Box::pin(async move {
            let v: serde_json::Value = serde_json::from_slice(&r.payload)
                .map_err(|e| EffectError::Poison(format!("not a counter event: {e}")))?;
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

/// Between two good records of one key, a record that does not decode: the good ones take
/// effect, the bad one lands once in `<topic>.dlq` with its payload, event id, reason, origin
/// (`topic/partition/offset`) and the group that gave up on it.
pub async fn a_poison_record_is_dead_lettered_and_the_records_around_it_take_effect(
    log: Arc<dyn EventLog>,
    topic: &str,
    group: &str,
) {
    let producer = log
        .producer(ProducerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let mut acks = Vec::new();
    for (i, payload) in ["{\"n\":1}", "not json", "{\"n\":2}"].iter().enumerate() {
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
    let (trigger, shutdown) = Shutdown::new();
    let consumer = tokio::spawn(run_consumer(
        Arc::new(store.clone()),
        log.clone(),
        ConsumerSettings {
            consumer: ConsumerConfig::new(group),
            topics: vec![topic.into()],
            producer: ProducerConfig::default(),
            inbox: true,
        },
        effect(),
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
    while letters.is_empty() {
        assert!(
            started.elapsed() < DEADLINE,
            "the poison record must reach {dlq} within {DEADLINE:?}"
        );
        if let Ok(batch) = reader.poll(Duration::from_millis(500)).await {
            letters.extend(batch);
        }
    }
    trigger.trigger();
    let _ = consumer.await;

    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
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
}
