//! The broker-fault conformance suite (`conformance::broker_faults`) on the real
//! cluster: the same scenarios the simulation's Kafka model runs (`sim/tests/sim/broker_faults.rs`),
//! with real brokers SIGKILLed and restarted through `ci/infra/kafka.sh` (ARCHITECTURE.md §3,
//! §7). [`faults::RealFaults`] is this world's adapter of the suite's `BrokerFaults`. Needs the
//! loopback stack of `ci/infra/up.sh`: the 3-broker cluster (RF 3, min ISR 2, unclean
//! election off, racks msk/msk/nsk) at `KAFKA_BOOTSTRAP` and PostgreSQL at `DATABASE_URL`. A
//! missing server fails the tests, it never skips them.
//!
//! Tests kill brokers, so they run one at a time ([`support::exclusive`]) and nothing else may
//! use the cluster meanwhile. Each test starts only on a healthy cluster (3 brokers alive,
//! every in-sync replica set full), uses fresh topics (RF 3, min ISR 2), groups and schema,
//! and restarts every broker it killed even when it fails ([`brokers::Outage`]), so the
//! cluster is left as found. The group scenario's dying member runs in a child process
//! ([`child`]) and is SIGKILLed, so it never leaves its group politely.
//!
//! Deliberate difference from the model: below min ISR the rdkafka adapter reports
//! `Timeout` (librdkafka retries `NOT_ENOUGH_REPLICAS` until `delivery.timeout.ms`), the
//! model `NotEnoughReplicas`; the suite accepts a `Timeout` only when a send without retries
//! shows the leader's own `NOT_ENOUGH_REPLICAS`.
//!
//! Run: `cargo test -p adapters --test broker_faults -- --nocapture` (per-test timings and the
//! observed error variants are printed to stderr).

mod brokers;
mod child;
mod durability;
mod faults;
mod groups;
mod outbox;
mod rack;
// Each test binary uses part of the shared helpers.
#[allow(dead_code)]
#[path = "../common/servers.rs"]
mod servers;
mod support;
