//! Checkers over a run's final state, each in its own file. A checker returns the
//! violations it found; every one is shown failing on a mutant (see `tests/sim/mutants.rs`).

mod accounts;
mod admission;
mod ads;
mod analytics_mart;
mod exclusive_work;
pub mod fail_fast;
mod goods;
mod kafka_log;
mod messages;
mod moderation_work;
mod money;
pub mod notifications;
mod order_events;
mod photos;
mod saga_liveness;
mod search;
mod trace_context;

use std::{collections::BTreeMap, fmt};

use order::Order;
use platform::ports::ConsumedRecord;

/// Everything the checkers look at after the heal phase.
#[derive(Default)]
pub struct FinalState {
    /// The order service's orders, by id.
    pub orders: BTreeMap<String, Order>,
    /// Order ids the gateway acknowledged to the client.
    pub acknowledged: Vec<String>,
    /// Idempotency keys of create requests the gateway refused (429/503) and the client did
    /// not retry.
    pub refused: Vec<String>,
    /// Orders the gateway showed to a user who does not own them: (order, reader, owner).
    pub foreign_reads: Vec<(String, String, String)>,
    /// Conditional reads answered 304 for a tag older than an acknowledged version:
    /// (ad, tag, acknowledged version).
    pub stale_not_modified: Vec<(String, String, i64)>,
    /// Ads the gateway acknowledged as created.
    pub acknowledged_ads: Vec<String>,
    /// The ad service's ads: id → (version, ad).
    pub ads: BTreeMap<String, (i64, ad::Ad)>,
    /// `ad.changed` as the cluster holds it, per partition, below the high watermark.
    pub ad_events: Vec<Vec<ConsumedRecord>>,
    /// Every ad looked up through search after heal: (id, status, found).
    pub search_lookups: Vec<crate::workload::Lookup>,
    /// The user service's accounts: user id → email as registered.
    pub users: BTreeMap<String, String>,
    /// The media service's photos, by id.
    pub photos: BTreeMap<String, media::Photo>,
    /// What the object store holds: `<bucket>/<key>` → (size, content type).
    pub objects: BTreeMap<String, (i64, String)>,
    /// The bucket photos go to.
    pub bucket: String,
    /// Photos the gateway acknowledged as attached: (ad, photo).
    pub attached_photos: Vec<(String, String)>,
    /// Uploads through URLs the gateway handed out that storage refused: (photo, status).
    pub uploads_refused: Vec<(String, u16)>,
    /// Reports the gateway accepted (202).
    pub acknowledged_reports: Vec<String>,
    /// The report service's reports, by id.
    pub reports: BTreeMap<String, report::Report>,
    /// Every decision the moderation workers made.
    pub decisions: Vec<moderation::Decision>,
    /// `moderation.tasks` and `moderation.results` as the cluster holds them, per partition,
    /// below the high watermark.
    pub task_events: Vec<Vec<ConsumedRecord>>,
    /// Accounts the user service blocked.
    pub blocked_users: std::collections::BTreeSet<String>,
    pub result_events: Vec<Vec<ConsumedRecord>>,
    /// The order service's create requests: idempotency key → the order it made.
    pub requests: BTreeMap<String, String>,
    /// Whether the client finished placing its orders.
    pub workload_done: bool,
    /// The PSP's books: per order, net money captured and the number of captures.
    pub ledger: BTreeMap<String, (i64, u32)>,
    /// The courier's books: per order, each booking's fate (`DELIVERED`, `FAILED` or
    /// `CANCELLED`, what it becomes when left alone).
    pub shipments: BTreeMap<String, Vec<String>>,
    /// `order.status.changed` as the cluster holds it, per partition, below the high watermark.
    pub order_events: Vec<Vec<ConsumedRecord>>,
    /// The analytics service's mart: counter by key.
    pub analytics: BTreeMap<String, i64>,
    /// The notification service's feeds: recipient → (epoch, updates by seq).
    pub feeds: BTreeMap<String, (String, Vec<notification::Update>)>,
    /// What the customers' live sessions received, in arrival order.
    pub received: Vec<crate::workload::Received>,
    /// When each live session was open.
    pub live_sessions: Vec<crate::workload::SessionSpan>,
    /// From when live updates must be timely (ms since the epoch): a grace after startup
    /// in a run without faults, after heal otherwise; `None`: never (see the world).
    pub quiet_from_ms: Option<u64>,
    /// The notification service's messages (gRPC `Notify`), by idempotency key.
    pub outgoing: BTreeMap<String, notification::Outgoing>,
    /// What the messaging provider delivered: how many messages per sender's reference.
    pub messages_delivered: BTreeMap<String, u32>,
    /// Writes the cluster acknowledged that are not in the log where they were acknowledged.
    pub lost_acknowledged: Vec<String>,
    /// Every `POST /v1/orders` the client sent, answered or not.
    pub order_attempts: Vec<crate::workload::Attempt>,
    /// When database nodes were slow (`slow` faults).
    pub slow_windows: Vec<fail_fast::SlowWindow>,
    /// The trace id each order request was sent in, by the order service's request key.
    pub order_traces: BTreeMap<String, String>,
    /// Every call the PSP got: (order id, the `traceparent` it carried).
    pub psp_traced: Vec<(String, Option<String>)>,
    /// Every call the courier got: (order id, the `traceparent` it carried).
    pub courier_traced: Vec<(String, Option<String>)>,
    /// Every call the messaging provider got: (the message's key, the `traceparent` it
    /// carried).
    pub messenger_traced: Vec<(String, Option<String>)>,
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
const CHECKERS: [(&str, fn(&FinalState) -> Vec<Violation>); 17] = [
    (saga_liveness::NAME, saga_liveness::check),
    (money::NAME, money::check),
    (goods::NAME, goods::check),
    (order_events::NAME, order_events::check),
    (kafka_log::NAME, kafka_log::check),
    (analytics_mart::NAME, analytics_mart::check),
    (exclusive_work::NAME, exclusive_work::check),
    (admission::NAME, admission::check),
    (accounts::NAME, accounts::check),
    (ads::NAME, ads::check),
    (search::NAME, search::check),
    (photos::NAME, photos::check),
    (moderation_work::NAME, moderation_work::check),
    (notifications::NAME, notifications::check),
    (messages::NAME, messages::check),
    (fail_fast::NAME, fail_fast::check),
    (trace_context::NAME, trace_context::check),
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
pub fn settled(
    orders: &BTreeMap<String, Order>,
    order_outbox_drained: bool,
    payments_without_work: bool,
    mart: &BTreeMap<String, i64>,
) -> bool {
    let transitions: usize = orders.values().map(|o| o.history.len()).sum();
    let counted: i64 = analytics_mart::status_counts(mart).values().sum();
    orders.values().all(|o| o.status.is_terminal())
        && order_outbox_drained
        && payments_without_work
        && counted >= transitions as i64
}

/// The statuses an order went through, oldest first.
fn history(order: &Order) -> Vec<String> {
    order
        .history
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}
