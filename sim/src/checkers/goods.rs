//! Goods: read from the courier's own books (as money reads the PSP's). Every DELIVERED order
//! has exactly one shipment, and the courier delivers it; no CANCELLED order's goods are
//! delivered (the buyer would have both the goods and the refund); no order is booked twice.
//! A shipment still on its way at the end counts as what it becomes when left alone.

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "goods";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut say = |detail: String| {
        out.push(Violation {
            checker: NAME,
            detail,
        })
    };
    for (order_id, fates) in &state.shipments {
        if fates.len() > 1 {
            say(format!(
                "order {order_id} was booked {} times: {}",
                fates.len(),
                fates.join(", ")
            ));
        }
        let delivered = fates.iter().filter(|f| *f == "DELIVERED").count();
        match state.orders.get(order_id).map(|o| o.status.as_str()) {
            None => say(format!("the courier booked unknown order {order_id}")),
            Some("CANCELLED") if delivered > 0 => say(format!(
                "order {order_id} is CANCELLED (refunded) but the courier delivered its goods"
            )),
            Some("DELIVERED") if delivered != 1 => say(format!(
                "order {order_id} is DELIVERED but the courier's books say {}",
                fates.join(", ")
            )),
            _ => {}
        }
    }
    for (order_id, o) in &state.orders {
        if o.status.as_str() == "DELIVERED" && !state.shipments.contains_key(order_id) {
            say(format!(
                "order {order_id} is DELIVERED but the courier never booked it"
            ));
        }
    }
    out
}
