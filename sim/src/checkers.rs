//! Checkers over a run's final state, each in its own file. A checker returns the
//! violations it found; every one is shown failing on a mutant (see `tests/sim/mutants.rs`).

mod money;
mod order_events;
mod saga_liveness;

use std::{collections::BTreeMap, fmt};

use platform::{ports::ConsumedRecord, store::MemoryState};

/// Everything the checkers look at after the heal phase.
pub struct FinalState {
    /// The order service's database.
    pub orders: MemoryState,
    /// The payment service's database.
    pub payments: MemoryState,
    /// Order ids the gateway acknowledged to the client.
    pub acknowledged: Vec<String>,
    /// Whether the client finished placing its orders.
    pub workload_done: bool,
    /// The PSP's books: per order, net money captured and the number of captures.
    pub ledger: BTreeMap<String, (i64, u32)>,
    /// `order.status.changed` as the cluster holds it, per partition, below the high watermark.
    pub order_events: Vec<Vec<ConsumedRecord>>,
}

/// One broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which checker found it.
    pub checker: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}

/// Runs every checker.
pub fn check_all(state: &FinalState) -> Vec<Violation> {
    let mut v = saga_liveness::check(state);
    v.extend(money::check(state));
    v.extend(order_events::check(state));
    v
}

/// Whether the system has come to rest: every order terminal, the order outbox drained,
/// no payment with PSP work left.
pub fn settled(orders: &MemoryState, payments: &MemoryState, _deliveries: &MemoryState) -> bool {
    orders.list_active("orders", 1).is_empty()
        && orders.outbox_pending(1).is_empty()
        && payments.list_active("payments", 1).is_empty()
}

fn status_of(v: &serde_json::Value) -> &str {
    v.get("status").and_then(|s| s.as_str()).unwrap_or("?")
}
