//! Checkers over a run's final state, each in its own file. A checker returns the
//! violations it found; every one is shown failing on a mutant (see `tests/sim/mutants.rs`).

mod analytics_mart;
mod exclusive_work;
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

/// Every checker, by the name scenario files select it with.
const CHECKERS: [(&str, fn(&FinalState) -> Vec<Violation>); 6] = [
    (saga_liveness::NAME, saga_liveness::check),
    (money::NAME, money::check),
    (order_events::NAME, order_events::check),
    (kafka_log::NAME, kafka_log::check),
    (analytics_mart::NAME, analytics_mart::check),
    (exclusive_work::NAME, exclusive_work::check),
];

/// Every checker's name.
pub fn names() -> Vec<&'static str> {
    CHECKERS.iter().map(|(name, _)| *name).collect()
}

/// Runs the checkers named in `selected` (names from [`names`]; others are ignored).
pub fn check(state: &FinalState, selected: &[&str]) -> Vec<Violation> {
    CHECKERS
        .into_iter()
        .filter(|(name, _)| selected.contains(name))
        .flat_map(|(_, check)| check(state))
        .collect()
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
