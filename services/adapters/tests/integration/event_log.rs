//! `KafkaEventLog` passes the event-log conformance suite on the real cluster (a fresh topic
//! and group per test), and keeps the promises that are its own (topics, failures).

use std::time::Duration;

use ::conformance::inbox as conformance_inbox;
use adapters::{KafkaConfig, KafkaEventLog};
use conformance::event_log as conformance;
use platform::ports::EventLogError;

use crate::support::{fresh_topic, kafka, unique};

/// Partitions of the test topics: more than one, so order and placement are per partition.
const PARTITIONS: i32 = 3;

#[tokio::test]
async fn kafka_reads_acked_records_back_through_a_consumer_group() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_read_back", PARTITIONS).await;
    conformance::acked_records_are_read_back_by_a_consumer_group(&log, &topic, &unique("g")).await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn kafka_keeps_the_send_order_of_one_key() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_key_order", PARTITIONS).await;
    conformance::records_with_one_key_are_read_in_send_order(&log, &topic, &unique("g")).await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn kafka_places_keys_where_the_java_partitioner_does() {
    let log = kafka().await;
    let partitions = 6;
    let topic = fresh_topic(&log, "it_placement", partitions).await;
    conformance::keys_land_on_the_partition_kafkas_default_partitioner_picks(
        &log, &topic, partitions,
    )
    .await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn kafka_group_reopened_continues_after_its_committed_offsets() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_reopen", PARTITIONS).await;
    conformance::a_reopened_group_continues_after_its_committed_offsets(&log, &topic, &unique("g"))
        .await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn kafka_tells_a_members_lag() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_lag", PARTITIONS).await;
    conformance::a_members_lag_is_what_it_has_not_read_yet(&log, &topic, &unique("g")).await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn kafka_idempotent_producer_writes_each_acked_record_once() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_idempotent", PARTITIONS).await;
    conformance::an_idempotent_producer_writes_each_acked_record_exactly_once(
        &log,
        &topic,
        &unique("g"),
    )
    .await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn ensure_topic_is_idempotent_and_refuses_another_partition_count() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_ensure", PARTITIONS).await;
    log.ensure_topic(&topic, PARTITIONS, 3, 2)
        .await
        .expect("ensuring an existing topic with the same shape succeeds");
    let other = log.ensure_topic(&topic, PARTITIONS + 1, 3, 2).await;
    assert!(
        matches!(other, Err(EventLogError::Fatal(_))),
        "ensuring an existing topic with another partition count must fail, got {other:?}"
    );
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn topic_configs_apply_on_creation_and_to_a_topic_that_exists() {
    let log = kafka().await;
    let retention = |days: u64| ("retention.ms".to_owned(), (days * 86_400_000).to_string());
    // Created with its configs.
    let topic = unique("it_configs");
    log.ensure_topic_with(&topic, 1, 3, 2, &[retention(3)])
        .await
        .expect("create with configs");
    let configs = log.topic_configs(&topic).await.expect("describe");
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("259200000")
    );
    assert_eq!(
        configs.get("min.insync.replicas").map(String::as_str),
        Some("2")
    );
    // The list changed: the existing topic takes the new value, keeping the rest. The
    // change reaches each broker through the metadata log: `ensure_topic_with` returns once
    // a broker holds it, and a describe answered by another broker may still show the old
    // value for a moment, so every broker must show it within a bound.
    log.ensure_topic_with(&topic, 1, 3, 2, &[retention(4)])
        .await
        .expect("alter configs");
    let started = tokio::time::Instant::now();
    let configs = loop {
        let configs = log.topic_configs(&topic).await.expect("describe");
        if configs.get("retention.ms").map(String::as_str) == Some("345600000") {
            break configs;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the cluster still shows {:?} 10 s after the change",
            configs.get("retention.ms")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        configs.get("min.insync.replicas").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        configs
            .get("unclean.leader.election.enable")
            .map(String::as_str),
        Some("false")
    );
    // A config the broker does not know is refused.
    let bad = log
        .ensure_topic_with(
            &topic,
            1,
            3,
            2,
            &[("retention.fortnights".into(), "2".into())],
        )
        .await;
    assert!(
        bad.is_err(),
        "an unknown config must be refused, got {bad:?}"
    );
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn the_listed_topics_carry_their_configs_on_the_cluster() {
    let log = kafka().await;
    log.ensure_listed_topics().await.expect("ensure the list");
    for t in platform::topics::all() {
        let configs = log.topic_configs(&t.name).await.expect("describe");
        for (k, v) in &t.configs {
            assert_eq!(configs.get(k), Some(v), "{} {k}", t.name);
        }
    }
}

#[tokio::test]
async fn the_relay_replaces_a_producer_broken_for_good_and_drains_the_outbox() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_relay_fatal", PARTITIONS).await;
    let log = std::sync::Arc::new(log);
    ::conformance::relay::the_relay_replaces_a_producer_broken_for_good_and_drains_the_outbox(
        log.clone(),
        &topic,
        &unique("g"),
    )
    .await;
    log.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test]
async fn connecting_to_a_cluster_that_is_not_there_fails_retriably() {
    let mut config = KafkaConfig::new("127.0.0.1:1");
    config.admin_timeout = Duration::from_secs(2);
    let result = KafkaEventLog::connect(config).await;
    match result {
        Err(e) => assert!(
            e.is_retriable(),
            "an unreachable cluster is a retriable failure, got {e:?}"
        ),
        Ok(_) => panic!("connecting to a closed port must fail"),
    }
}

#[tokio::test]
async fn kafka_consumer_dead_letters_a_poison_record_and_goes_on() {
    let log = kafka().await;
    let topic = fresh_topic(&log, "it_poison", PARTITIONS).await;
    let dlq = platform::topics::dlq(&topic);
    log.ensure_topic(&dlq, 1, 3, 2)
        .await
        .unwrap_or_else(|e| panic!("creating {dlq}: {e}"));
    let log = std::sync::Arc::new(log);
    conformance_inbox::bad_records_are_dead_lettered_and_the_records_around_them_take_effect(
        log.clone(),
        &topic,
        &unique("g"),
    )
    .await;
    for t in [&topic, &dlq] {
        log.delete_topic(t).await.expect("delete topic");
    }
}
