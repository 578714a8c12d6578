//! The madsim world. Everything here exists only in simulation builds (`--cfg madsim`, run
//! through `ci/sim` and `ci/simulate`); a normal build compiles this crate to nothing.

#![cfg(madsim)]

pub mod artifacts;
pub mod checkers;
pub mod db;
pub mod journal;
pub mod kafka;
pub mod nightly;
pub mod redis;
pub mod rpc;
pub mod runner;
pub mod scenario;
pub mod timeline;
pub mod topology;
pub mod workload;
pub mod world;
