//! Exclusive work: with several instances of a service, each piece of work is done by one
//! instance at a time. Every status event names the saga driver that committed it
//! (`saga-driver: <instance>/<claim token>`) and the relay that sent it
//! (`relay-lease: <instance>/<lease token>`); a token changes whenever a claim or the relay
//! lease passes to another instance, so one token used by two instances means two instances
//! drove one order, or relayed, at the same time.

use std::collections::{BTreeMap, BTreeSet};

use platform::outbox::RELAY_LEASE_HEADER;

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "exclusive-work";

pub fn check(state: &FinalState) -> Vec<Violation> {
    // (what, token) → instances that used it.
    let mut users: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for partition in &state.order_events {
        for r in partition {
            let stamps = [
                (
                    format!("saga of order {}", r.key),
                    r.header(order::DRIVER_HEADER),
                ),
                ("outbox relay".to_owned(), r.header(RELAY_LEASE_HEADER)),
            ];
            for (what, stamp) in stamps {
                let Some((instance, token)) = stamp.and_then(|s| s.rsplit_once('/')) else {
                    continue;
                };
                users
                    .entry((what, token.to_owned()))
                    .or_default()
                    .insert(instance.to_owned());
            }
        }
    }
    users
        .into_iter()
        .filter(|(_, instances)| instances.len() > 1)
        .map(|((what, token), instances)| Violation {
            checker: NAME,
            detail: format!(
                "{what}: token {token} used by {} instances at once ({})",
                instances.len(),
                instances.into_iter().collect::<Vec<_>>().join(", ")
            ),
        })
        .collect()
}
