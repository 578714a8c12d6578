//! The shared platform every service is built on.
//!
//! Service logic talks only to the ports defined here ([`ports::EventLog`], [`ports::Store`]),
//! so the same code runs against production adapters (rdkafka, sqlx; crate `adapters`) and
//! against the simulation's models (crate `sim`). Everything that must behave the same in both
//! worlds — the outbox relay, the inbox, claims and leases for several instances, change
//! notifications, the retry helper, the HTTP serve loop and client — lives here once.
//!
//! The error policy every service follows is written in [`errors`].

pub mod breaker;
pub mod calendar;
pub mod changes;
pub mod claims;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod infra;
pub mod metrics;
pub mod mutants;
pub mod outbox;
pub mod partitioner;
pub mod ports;
pub mod retry;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod topics;
pub mod trace;
pub mod worker;

pub use infra::Infra;
pub use mutants::Mutants;
pub use shutdown::Shutdown;
