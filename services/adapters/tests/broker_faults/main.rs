//! Fault conformance on the real cluster: the scenarios the simulation's Kafka model runs
//! (`sim/tests/sim/kafka_model.rs`), with real brokers SIGKILLed and restarted through
//! `ci/infra/kafka.sh` (ARCHITECTURE.md §3, §7). Needs the loopback stack of
//! `ci/infra/up.sh`: the 3-broker cluster (RF 3, min ISR 2, unclean election off, racks
//! msk/msk/nsk) at `KAFKA_BOOTSTRAP` and PostgreSQL at `DATABASE_URL`. A missing server fails
//! the tests, it never skips them.
//!
//! Tests kill brokers, so they run one at a time ([`support::exclusive`]) and nothing else may
//! use the cluster meanwhile. Each test starts only on a healthy cluster (3 brokers alive,
//! every in-sync replica set full), uses a fresh topic (RF 3, min ISR 2), group and schema,
//! and restarts every broker it killed even when it fails ([`brokers::Outage`]), so the
//! cluster is left as found.
//!
//! Run: `cargo test -p adapters --test broker_faults -- --nocapture` (per-test timings and the
//! observed error variants are printed to stderr).

mod brokers;
mod durability;
mod groups;
mod outbox;
mod rack;
mod support;
