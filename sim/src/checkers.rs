//! Checkers over a run's final state, each in its own file. A checker returns the
//! violations it found; every one is shown failing on a mutant (see `tests/sim/mutants.rs`).

mod analytics_mart;
mod kafka_log;
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
    /// The analytics service's database (its mart).
    pub analytics: MemoryState,
    /// Writes the cluster acknowledged that are not in the log where they were acknowledged.
    pub lost_acknowledged: Vec<String>,
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
    v.extend(kafka_log::check(state));
    v.extend(analytics_mart::check(state));
    v
}

/// Whether the system has come to rest: every order terminal, the order outbox drained,
/// no payment with PSP work left, and the analytics mart counting as many events as the
/// orders went through (or more: a mutant's double count must not stall the run).
pub fn settled(orders: &MemoryState, payments: &MemoryState, analytics: &MemoryState) -> bool {
    let transitions: usize = orders
        .all("orders")
        .iter()
        .map(|(_, v)| history(&v.body).len())
        .sum();
    let counted: i64 = analytics_mart::status_counts(analytics).values().sum();
    orders.list_active("orders", 1).is_empty()
        && orders.outbox_pending(1).is_empty()
        && payments.list_active("payments", 1).is_empty()
        && counted >= transitions as i64
}

fn history(order: &serde_json::Value) -> Vec<String> {
    order
        .get("history")
        .and_then(|h| h.as_array())
        .map(|h| {
            h.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn status_of(v: &serde_json::Value) -> &str {
    v.get("status").and_then(|s| s.as_str()).unwrap_or("?")
}
