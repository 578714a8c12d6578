//! Store helpers shared by every adapter: the in-memory state (the platform tables plus a
//! schema's model; used by unit tests and hosted by the simulation's DB nodes) and the kv
//! schema the conformance suite runs on.

pub mod kv;
mod memory;
pub mod observed;

pub use memory::{now_ms, MemoryState, MemoryStore, PlatformState};
pub use observed::Observed;

pub use crate::ports::store::{Platform, Schema, Store};
