//! Order events: every committed status change appears in `order.status.changed` exactly
//! once in effect (duplicates of an event id are allowed in the log, consumers drop them),
//! nothing appears that was not committed, and each order's events are in order.

use std::collections::{BTreeMap, BTreeSet};

use super::{history, FinalState, Violation};

pub(crate) const NAME: &str = "order-events";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    // Per order: first occurrences of event ids in log order, and their statuses.
    let mut seen: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for partition in &state.order_events {
        for r in partition {
            let Ok(e) = serde_json::from_slice::<serde_json::Value>(&r.payload) else {
                out.push(Violation {
                    checker: NAME,
                    detail: format!("undecodable record at {}:{}", r.partition, r.offset),
                });
                continue;
            };
            let event_id = e
                .get("event_id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            if !ids.insert(event_id.clone()) {
                continue;
            }
            let seq = e.get("seq").and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
            let status = e
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_owned();
            seen.entry(r.key.clone()).or_default().push((seq, status));
        }
    }
    for (order_id, o) in &state.orders {
        let history = history(o);
        let events = seen.remove(order_id).unwrap_or_default();
        let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
        let want: Vec<u64> = (0..history.len() as u64).collect();
        if seqs != want {
            let missing: Vec<u64> = want.iter().filter(|s| !seqs.contains(s)).copied().collect();
            let detail = if missing.is_empty() {
                format!("order {order_id}: events out of order: {seqs:?}")
            } else {
                let lost: Vec<&str> = missing
                    .iter()
                    .map(|&s| history[s as usize].as_str())
                    .collect();
                format!("order {order_id}: committed changes never published: {lost:?}")
            };
            out.push(Violation {
                checker: NAME,
                detail,
            });
            continue;
        }
        for (seq, status) in &events {
            if history.get(*seq as usize) != Some(status) {
                out.push(Violation {
                    checker: NAME,
                    detail: format!(
                        "order {order_id}: event {seq} says {status}, history says {:?}",
                        history.get(*seq as usize)
                    ),
                });
            }
        }
    }
    for (order_id, events) in seen {
        out.push(Violation {
            checker: NAME,
            detail: format!(
                "{} events for order {order_id} that was never committed",
                events.len()
            ),
        });
    }
    out
}
