//! Conformance suites: one per port, run against every adapter (in memory, the simulation's
//! models, and the real servers in CI). An adapter that passes behaves as service logic expects.
//! A crate of its own, so production builds carry no test suites: a dev-dependency of
//! `adapters` and a dependency of `sim`.

pub mod broker_faults;
pub mod event_log;
pub mod hints;
pub mod inbox;
pub mod objects;
pub mod relay;
pub mod store;
