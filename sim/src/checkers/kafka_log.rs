//! The log itself, in the manner of Jepsen's Kafka workload: no acknowledged write lost, and
//! no single send appended twice (a retried batch the broker failed to deduplicate). A record
//! re-sent by the outbox relay after a crash is a new send, which consumers deduplicate by
//! event id; the `send-id` header the relay stamps on each send tells the two apart.

use std::collections::BTreeMap;

use platform::outbox::SEND_ID_HEADER;

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "kafka-log";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out: Vec<Violation> = state
        .lost_acknowledged
        .iter()
        .map(|w| Violation {
            checker: NAME,
            detail: format!("acknowledged write lost: {w}"),
        })
        .collect();
    let mut sends: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for partition in &state.order_events {
        for r in partition {
            if let Some(id) = r.header(SEND_ID_HEADER) {
                sends.entry(id).or_default().push((r.partition, r.offset));
            }
        }
    }
    for (id, places) in sends {
        if places.len() > 1 {
            out.push(Violation {
                checker: NAME,
                detail: format!("send {id} appended {} times at {places:?}", places.len()),
            });
        }
    }
    out
}
