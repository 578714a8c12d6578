//! Money: no order is charged twice; a cancelled order keeps no money; a delivered order
//! was paid exactly its amount. Read from the PSP's own books.

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "money";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    for (order_id, &(net, captures)) in &state.ledger {
        if captures > 1 {
            out.push(Violation {
                checker: NAME,
                detail: format!("order {order_id} was charged {captures} times"),
            });
        }
        let Some(order) = state.orders.get(order_id) else {
            out.push(Violation {
                checker: NAME,
                detail: format!("money moved for unknown order {order_id}"),
            });
            continue;
        };
        let amount = order.amount_minor;
        match order.status.as_str() {
            "CANCELLED" if net != 0 => {
                out.push(Violation {
                    checker: NAME,
                    detail: format!("cancelled order {order_id} still holds {net} (not refunded)"),
                });
            }
            "DELIVERED" if net != amount => {
                out.push(Violation {
                    checker: NAME,
                    detail: format!("delivered order {order_id} holds {net}, expected {amount}"),
                });
            }
            _ => {}
        }
    }
    for (order_id, o) in &state.orders {
        if o.status.as_str() == "DELIVERED" && !state.ledger.contains_key(order_id) {
            out.push(Violation {
                checker: NAME,
                detail: format!("order {order_id} was delivered without payment"),
            });
        }
    }
    out
}
