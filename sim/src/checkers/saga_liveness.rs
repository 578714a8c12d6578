//! Saga liveness: after heal every order is DELIVERED or CANCELLED, and no order the client
//! was told about is missing.

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "saga-liveness";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    if !state.workload_done {
        out.push(Violation {
            checker: NAME,
            detail: "the client was still placing orders when the heal phase ended".into(),
        });
    }
    for (id, o) in &state.orders {
        let status = o.status.as_str();
        if status != "DELIVERED" && status != "CANCELLED" {
            out.push(Violation {
                checker: NAME,
                detail: format!("order {id} is stuck in {status}"),
            });
        }
    }
    for id in &state.acknowledged {
        if !state.orders.contains_key(id) {
            out.push(Violation {
                checker: NAME,
                detail: format!("order {id} was acknowledged to the client but is not stored"),
            });
        }
    }
    out
}
