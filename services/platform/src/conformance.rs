//! Conformance suites: one per port, run against every adapter (in memory, the simulation's
//! models, and the real servers in CI). An adapter that passes behaves as service logic expects.

pub mod broker_faults;
pub mod event_log;
pub mod store;
