//! Production adapters of the platform ports: [`PgStore`] (Postgres through sqlx) implements
//! [`platform::ports::Store`], [`KafkaEventLog`] (librdkafka through rdkafka) implements
//! [`platform::ports::EventLog`]. Service logic never sees these types; `main` builds them and
//! hands them over as ports. Both pass the conformance suites in `platform::conformance`
//! against real servers (`tests/integration`).
//!
//! Error policy: every port method returns the port's own error enum, and each adapter maps
//! its client library's errors onto it in exactly one function (`postgres::error`,
//! `kafka::error`). The split that matters to callers is "retrying can help" (connection
//! lost, timeout, leader moving: `Unavailable` / `Timeout`) versus "it will not" (`Fatal`).
//! Constructors (connect, migrate, create topics) return their own errors, since they run at
//! start-up where the caller wants the cause, not a retry decision.
//!
//! [`RedisHints`] (redis-rs) implements [`platform::ports::Hints`], Redis PUB/SUB.
//!
//! No adapter runs under madsim (sqlx, librdkafka and redis-rs own real sockets and threads); the
//! simulation uses its own models in crate `sim`.

pub mod kafka;
pub mod postgres;
pub mod redis;

pub use kafka::{KafkaConfig, KafkaEventLog};
pub use postgres::{PgProbe, PgStore, PgStoreConfig, SchemaName};
pub use redis::RedisHints;
