//! librdkafka properties from the port's [`ProducerConfig`] / [`ConsumerConfig`].

use std::time::Duration;

use platform::ports::{ConsumerConfig, ProducerConfig};
use rdkafka::ClientConfig;

/// In-flight produce requests per broker connection: the most an idempotent producer may
/// pipeline while still keeping per-partition order across retries.
const IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX: &str = "5";

/// The properties of a producer.
pub(crate) fn producer(bootstrap_servers: &str, config: &ProducerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers)
        .set("client.id", &config.client_id)
        .set("acks", config.acks.as_kafka())
        .set("enable.idempotence", config.enable_idempotence.to_string())
        .set("delivery.timeout.ms", millis(config.delivery_timeout))
        .set("request.timeout.ms", millis(config.request_timeout))
        // The Java client's default: a key lands on murmur2(key) % partitions, the same
        // partition `platform::partitioner` (and so the simulation's model) computes.
        .set("partitioner", "murmur2_random")
        .set(
            "max.in.flight.requests.per.connection",
            IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX,
        );
    if let Some(rack) = &config.client_rack {
        c.set("client.rack", rack);
    }
    c
}

/// The properties of a group consumer.
///
/// Offsets are committed by hand ([`platform::ports::Consumer::commit`]), so librdkafka must
/// not store them as records are handed out. Only when auto-commit is switched on (the
/// "commit before processing" mutant) does it store them, or auto-commit would commit nothing.
pub(crate) fn consumer(bootstrap_servers: &str, config: &ConsumerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers)
        .set("client.id", &config.client_id)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", config.enable_auto_commit.to_string())
        .set(
            "enable.auto.offset.store",
            config.enable_auto_commit.to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", millis(config.session_timeout))
        .set("max.poll.interval.ms", millis(config.max_poll_interval))
        // librdkafka wants heartbeats well inside the session timeout.
        .set(
            "heartbeat.interval.ms",
            millis((config.session_timeout / 3).max(Duration::from_millis(1))),
        );
    if let Some(rack) = &config.client_rack {
        c.set("client.rack", rack);
    }
    c
}

/// The properties of an admin or metadata client.
pub(crate) fn admin(bootstrap_servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers);
    c
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

#[cfg(test)]
mod tests {
    use platform::ports::Acks;

    use super::*;

    #[test]
    fn the_seed_producer_waits_for_all_replicas_idempotently_with_java_partitioning() {
        let config = ProducerConfig {
            client_rack: Some("msk".into()),
            ..ProducerConfig::default()
        };
        let c = producer("b:9092", &config);
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("max.in.flight.requests.per.connection"), Some("5"));
        assert_eq!(c.get("client.rack"), Some("msk"));
        assert_eq!(c.get("delivery.timeout.ms"), Some("10000"));
        assert_eq!(c.get("request.timeout.ms"), Some("3000"));
    }

    #[test]
    fn a_weakened_producer_says_so_to_librdkafka() {
        let config = ProducerConfig {
            acks: Acks::Leader,
            enable_idempotence: false,
            ..ProducerConfig::default()
        };
        let c = producer("b:9092", &config);
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("enable.idempotence"), Some("false"));
        assert_eq!(c.get("client.rack"), None);
    }

    #[test]
    fn the_seed_consumer_commits_by_hand_from_the_earliest_offset() {
        let mut config = ConsumerConfig::new("analytics");
        config.client_rack = Some("nsk".into());
        let c = consumer("b:9092", &config);
        assert_eq!(c.get("group.id"), Some("analytics"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("client.rack"), Some("nsk"));
        assert_eq!(c.get("session.timeout.ms"), Some("10000"));
    }
}
