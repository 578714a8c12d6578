//! Real-stack tests: every service in this process on the production adapters, against the
//! real PostgreSQL and the real 3-broker Kafka cluster (`ci/infra/up.sh` starts them).
//! Each test gets its own ports and Postgres schemas.

mod support;

mod admission;
mod ads;
mod auth;
mod bad_input;
mod breakers;
mod browser;
mod idor;
mod metrics;
mod moderation_workers;
mod notifications;
mod notify;
mod photos;
mod process;
mod reports;
mod saga;
mod search;
mod security;
mod tls;
mod traces;
