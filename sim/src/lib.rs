//! The madsim world. Everything here exists only in simulation builds (`--cfg madsim`, run
//! through `ci/sim`); a normal build compiles this crate to nothing.

#![cfg(madsim)]

pub mod kafka;
pub mod rpc;
