//! Integration tests of the production adapters against real servers: PostgreSQL at
//! `DATABASE_URL`, the 3-broker Kafka cluster at `KAFKA_BOOTSTRAP` and Redis at `REDIS_URL`
//! (defaults: the loopback stack of `ci/infra/up.sh`). A missing server fails the tests, it never skips them.
//!
//! Each test gets its own schema / topic / consumer group, so tests run in parallel.

mod cancellation;
mod differential;
mod event_log;
mod hints;
mod store;
#[path = "../common/servers.rs"]
mod support;
