//! Store helpers shared by every adapter: the in-memory state machine (used by unit tests and
//! hosted by the simulation's DB nodes) and typed access on top of the raw [`Store`] port.

mod memory;
mod typed;

pub use memory::{now_ms, MemoryState, MemoryStore};
pub use typed::{load, Loaded};

pub use crate::ports::store::Store;
