//! Admission: a request the marketplace refused for capacity (429 or 503) created nothing —
//! a shed order is never half-created, so a client that takes the refusal at its word and
//! does not retry leaves no orphan order behind.

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "admission";

pub fn check(state: &FinalState) -> Vec<Violation> {
    state
        .refused
        .iter()
        .filter_map(|key| {
            state.requests.get(key).map(|order_id| Violation {
                checker: NAME,
                detail: format!("request {key} was refused (429/503) yet created order {order_id}"),
            })
        })
        .collect()
}
