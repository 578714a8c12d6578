//! Simulation tests (`ci/sim`): every scenario over a fixed seed set, every mutant caught,
//! same seed → same trace, and the Kafka model's own behaviour.

#![cfg(madsim)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod artifacts;
mod broker_faults;
mod conformance;
mod determinism;
mod kafka_model;
mod mutants;
mod page_cache;
mod regressions;
mod scenarios;
mod support;
