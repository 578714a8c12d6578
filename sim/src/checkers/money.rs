//! Money: no order is charged twice; a cancelled order keeps no money; a delivered order
//! was paid exactly its amount. Read from the PSP's own books.

use super::{status_of, FinalState, Violation};

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
        let Some(order) = state.orders.get("orders", order_id) else {
            out.push(Violation {
                checker: NAME,
                detail: format!("money moved for unknown order {order_id}"),
            });
            continue;
        };
        let amount = order
            .body
            .get("amount_minor")
            .and_then(|a| a.as_i64())
            .unwrap_or(0);
        match status_of(&order.body) {
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
    for (order_id, v) in state.orders.all("orders") {
        if status_of(&v.body) == "DELIVERED" && !state.ledger.contains_key(&order_id) {
            out.push(Violation {
                checker: NAME,
                detail: format!("order {order_id} was delivered without payment"),
            });
        }
    }
    out
}
