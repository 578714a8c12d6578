use std::{collections::BTreeMap, sync::Arc, time::Duration};

use adapters::{KafkaConfig, KafkaEventLog};
use gateway::OrderView;
use order::{StatusChanged, ORDER_STATUS_TOPIC};
use platform::ports::{ConsumerConfig, EventLog, Store};

use crate::support;

/// Reads `order.status.changed` from the beginning until `order_id` has `count` events.
async fn events_of(bootstrap: &str, order_id: &str, count: usize) -> Vec<StatusChanged> {
    let log: Arc<dyn EventLog> = Arc::new(
        KafkaEventLog::connect(KafkaConfig::new(bootstrap))
            .await
            .expect("kafka"),
    );
    // A name unique across runs of the test: OS randomness is what is wanted here.
    #[allow(clippy::disallowed_methods)]
    let group = format!("stack-test-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = log
        .consumer(ConsumerConfig::new(group), &[ORDER_STATUS_TOPIC])
        .await
        .expect("consumer");
    let mut seen: BTreeMap<(i32, i64), StatusChanged> = BTreeMap::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        for r in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            if r.key == order_id {
                let e: StatusChanged = serde_json::from_slice(&r.payload).expect("event decodes");
                seen.insert((r.partition, r.offset), e);
            }
        }
        if seen.len() >= count {
            break;
        }
    }
    let partitions: Vec<i32> = seen.keys().map(|(p, _)| *p).collect();
    assert!(
        partitions.windows(2).all(|w| w[0] == w[1]),
        "one key, one partition: {partitions:?}"
    );
    seen.into_values().collect()
}

fn assert_events_match_history(order: &OrderView, events: &[StatusChanged]) {
    let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(
        statuses, order.history,
        "every status change appears once, in order"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq as usize, i);
        assert_eq!(e.event_id, format!("{}:{i}", order.order_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_placed_through_the_gateway_is_delivered_and_its_events_are_on_the_topic_in_order() {
    let stack = support::start(|_| {}).await;
    let created = stack.place_order(Some("stack-happy-1")).await;
    assert_eq!(created.status, "CREATED");
    let done = stack
        .await_order(&created.order_id, Duration::from_secs(60), |o| {
            o.status == "DELIVERED"
        })
        .await;
    assert_eq!(
        done.history,
        [
            "CREATED",
            "PAYMENT_PENDING",
            "PAID",
            "SHIPPING",
            "SHIPPED",
            "DELIVERED"
        ]
    );
    let events = events_of(
        &stack.settings.kafka_bootstrap,
        &created.order_id,
        done.history.len(),
    )
    .await;
    assert_events_match_history(&done, &events);
    // The analytics consumer (its own group, reading the topic from the start) counts it.
    let schema = adapters::SchemaName::parse(&format!("{}analytics", stack.settings.schema_prefix))
        .expect("schema");
    let mart =
        adapters::PgStore::<analytics::MartSchema>::connect(&stack.settings.database_url, &schema)
            .await
            .expect("analytics store");
    let started = tokio::time::Instant::now();
    loop {
        let delivered = mart
            .query(analytics::MartQuery::Counter("status:DELIVERED".into()))
            .await
            .expect("read mart");
        if matches!(delivered, analytics::MartAnswer::Counter(n) if n >= 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "analytics never counted a delivered order"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_with_the_same_idempotency_key_returns_the_same_order() {
    let stack = support::start(|_| {}).await;
    let a = stack.place_order(Some("same-key")).await;
    let b = stack.place_order(Some("same-key")).await;
    assert_eq!(a.order_id, b.order_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_cancels_the_order_and_publishes_the_compensation() {
    let stack = support::start(|s| s.psp.decline_per_mille = 1000).await;
    let created = stack.place_order(None).await;
    let done = stack
        .await_order(&created.order_id, Duration::from_secs(60), |o| {
            o.status == "CANCELLED"
        })
        .await;
    assert_eq!(
        done.history,
        ["CREATED", "PAYMENT_PENDING", "PAYMENT_FAILED", "CANCELLED"]
    );
    let events = events_of(
        &stack.settings.kafka_bootstrap,
        &created.order_id,
        done.history.len(),
    )
    .await;
    assert_events_match_history(&done, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_psp_answers_too_late_its_duplicate_webhooks_settle_the_payment_once() {
    // Every PSP answer comes after payment's 2 s timeout, so only the webhook (posted twice)
    // can settle the charge before the order's 30 s payment deadline.
    let stack = support::start(|s| {
        s.psp.timeout_per_mille = 1000;
        s.psp.callback_copies = 2;
    })
    .await;
    let created = stack.place_order(None).await;
    let done = stack
        .await_order(&created.order_id, Duration::from_secs(25), |o| {
            o.status == "DELIVERED"
        })
        .await;
    assert!(
        done.history.contains(&"PAID".to_owned()),
        "{:?}",
        done.history
    );
}
