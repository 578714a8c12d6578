//! Below `min.insync.replicas` producers are refused and a Postgres outbox holds the events
//! until the cluster heals.

use std::sync::Arc;

use conformance::broker_faults::{self as suite, variant};
use platform::ports::EventLogError;

use crate::{faults::RealFaults, servers::FreshStore, support::exclusive};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal() {
    let x = exclusive(
        "with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal",
    )
    .await;
    let faults = RealFaults::new(&x).await;
    let fresh = FreshStore::new().await;
    let refusals =
        suite::with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal(
            faults.log(),
            &faults,
            Arc::new(fresh.store.clone()),
        )
        .await;
    eprintln!(
        "[broker_faults]   refusals below min ISR: the producer said {}, the leader {:?}, \
         the relay {:?}",
        variant(&refusals.producer),
        refusals.leader.as_ref().map(variant),
        refusals.relay
    );
    // librdkafka retries NOT_ENOUGH_REPLICAS until delivery.timeout.ms: the deliberate
    // difference from the model, whose producer reports it.
    assert!(
        matches!(refusals.producer, EventLogError::Timeout(_)),
        "the rdkafka adapter was expected to time out below min ISR, got {:?}; if librdkafka \
         now reports NOT_ENOUGH_REPLICAS, update the README's Kafka section",
        refusals.producer
    );
    fresh.drop_schema().await;
    faults.delete_topics().await;
}
