//! The ports' conformance suites (`platform::conformance`) against the simulation's adapters:
//! the Kafka model and the Postgres model. The same suites run against the real servers in
//! `services/adapters/tests`.

use std::{future::Future, sync::Arc};

use madsim::runtime::Handle;
use platform::{ports::EventLog, store::kv::KvSchema};
use sim::{
    db::{self, DbDisk, SimStore},
    kafka::{KafkaCluster, KafkaModelConfig, TopicSpec},
};

/// Runs `f` on a fresh client node in MSK (every model is reached over the simulated network).
async fn on_client<F: Future<Output = ()> + Send + 'static>(f: F) {
    let node = Handle::current()
        .create_node()
        .name("conformance-client")
        .ip("10.1.9.9".parse().expect("ip"))
        .build();
    node.spawn(f).await.expect("the scenario ran to the end");
}

fn cluster(topics: &[&str]) -> (Arc<KafkaCluster>, Arc<dyn EventLog>) {
    let config = KafkaModelConfig::seed_default()
        .with_topics(topics.iter().map(|t| TopicSpec::new(*t, 3)).collect());
    let cluster = Arc::new(KafkaCluster::start(config));
    let log = cluster.event_log();
    (cluster, log)
}

#[madsim::test]
async fn the_kafka_model_reads_back_acked_records_through_a_group() {
    let (_c, log) = cluster(&["conf-a"]);
    on_client(async move {
        conformance::event_log::acked_records_are_read_back_by_a_consumer_group(
            &*log, "conf-a", "g",
        )
        .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_keeps_per_key_send_order() {
    let (_c, log) = cluster(&["conf-b"]);
    on_client(async move {
        conformance::event_log::records_with_one_key_are_read_in_send_order(&*log, "conf-b", "g")
            .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_places_keys_like_kafkas_default_partitioner() {
    let (_c, log) = cluster(&["conf-c"]);
    on_client(async move {
        conformance::event_log::keys_land_on_the_partition_kafkas_default_partitioner_picks(
            &*log, "conf-c", 3,
        )
        .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_continues_a_reopened_group_after_its_commits() {
    let (_c, log) = cluster(&["conf-d"]);
    on_client(async move {
        conformance::event_log::a_reopened_group_continues_after_its_committed_offsets(
            &*log, "conf-d", "g",
        )
        .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_tells_a_members_lag() {
    let (_c, log) = cluster(&["conf-lag"]);
    on_client(async move {
        conformance::event_log::a_members_lag_is_what_it_has_not_read_yet(&*log, "conf-lag", "g")
            .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_idempotent_producer_writes_each_record_once() {
    let (_c, log) = cluster(&["conf-e"]);
    on_client(async move {
        conformance::event_log::an_idempotent_producer_writes_each_acked_record_exactly_once(
            &*log, "conf-e", "g",
        )
        .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_lets_a_consumer_dead_letter_a_poison_record_and_go_on() {
    let (_c, log) = cluster(&["conf-f", "conf-f.dlq"]);
    on_client(async move {
        conformance::inbox::bad_records_are_dead_lettered_and_the_records_around_them_take_effect(
            log, "conf-f", "g",
        )
        .await
    })
    .await;
}

#[madsim::test]
async fn the_kafka_model_lets_the_relay_replace_a_producer_broken_for_good() {
    let (_c, log) = cluster(&["conf-g"]);
    on_client(async move {
        conformance::relay::the_relay_replaces_a_producer_broken_for_good_and_drains_the_outbox(
            log, "conf-g", "g",
        )
        .await
    })
    .await;
}

#[madsim::test]
async fn the_postgres_model_passes_the_store_suite() {
    let addr = "10.1.2.99:5432".parse().expect("addr");
    let disk = DbDisk::<KvSchema>::default();
    Handle::current()
        .create_node()
        .name("conformance-db")
        .ip("10.1.2.99".parse().expect("ip"))
        .init(move || {
            db::serve(
                "kv-db".into(),
                addr,
                disk.clone(),
                Default::default(),
                Default::default(),
            )
        })
        .build();
    on_client(async move { conformance::store::run_all(&SimStore::<KvSchema>::new(addr)).await })
        .await;
}

/// Starts the Redis model on its node; the node's id (to kill it).
fn redis_node() -> (madsim::task::NodeId, sim::redis::SimHints) {
    let spec = sim::topology::redis();
    let addr = spec.addr();
    let id = Handle::current()
        .create_node()
        .name(spec.name.clone())
        .ip(spec.ip())
        .init(move || async move {
            let _ = sim::redis::serve(addr, Default::default()).await;
        })
        .build()
        .id();
    (id, sim::redis::SimHints { addr })
}

#[madsim::test]
async fn the_redis_model_passes_the_hint_bus_suite() {
    let (_id, bus) = redis_node();
    on_client(async move { conformance::hints::all(&bus, "model").await }).await;
}

#[madsim::test]
async fn a_redis_model_crash_ends_every_subscription_and_forgets_its_subscribers() {
    use futures::StreamExt;
    use platform::ports::Hints;
    let (id, bus) = redis_node();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let (restarted_tx, restarted_rx) = tokio::sync::oneshot::channel::<()>();
    let client = on_client(async move {
        let mut s = bus.subscribe("c").await.expect("subscribe");
        let _ = subscribed_tx.send(());
        assert!(s.next().await.is_none(), "the crash ends the subscription");
        restarted_rx.await.expect("restarted");
        // The restarted server has no subscriber until someone subscribes again (it may take
        // a moment to listen again).
        let reached = loop {
            match bus.publish("c", "m").await {
                Ok(n) => break n,
                Err(_) => madsim::task::yield_now().await,
            }
        };
        assert_eq!(reached, 0);
        let mut again = bus.subscribe("c").await.expect("subscribe again");
        assert_eq!(bus.publish("c", "m2").await.expect("publish"), 1);
        assert_eq!(again.next().await.as_deref(), Some("m2"));
    });
    let driver = async move {
        subscribed_rx.await.expect("subscribed");
        Handle::current().kill(id);
        Handle::current().restart(id);
        let _ = restarted_tx.send(());
    };
    futures::join!(client, driver);
}
