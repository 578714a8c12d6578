//! Messages: read from the messaging provider's own books (as money reads the PSP's). Every
//! buyer is told what the saga promises — "order confirmed" for each order that was paid,
//! "payment failed" for each cancelled after a failed payment, "delivered" for each delivered,
//! "refund issued" for each refunded after a failed delivery — and each message the
//! notification service queued is delivered by the provider exactly once: none left pending
//! or refused after heal, none delivered twice, nothing delivered that nobody asked for.

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "messages";

/// The messages the saga sends, by their keys' prefix (`<kind>-<order id>`).
const KINDS: [&str; 4] = ["confirmed", "payment-failed", "delivered", "refund"];

/// The order a message's key (the provider's reference) names.
pub fn order_of(key: &str) -> Option<&str> {
    KINDS
        .iter()
        .find_map(|k| key.strip_prefix(k)?.strip_prefix('-'))
}

/// The messages the saga sends for an order whose statuses were `history` (oldest first):
/// their keys' prefixes.
pub fn expected(history: &[String], status: &str) -> Vec<&'static str> {
    let had = |s: &str| history.iter().any(|h| h == s);
    let mut out = Vec::new();
    if had("PAID") {
        out.push(KINDS[0]);
    }
    if had("PAYMENT_FAILED") && status == "CANCELLED" {
        out.push(KINDS[1]);
    }
    if status == "DELIVERED" {
        out.push(KINDS[2]);
    }
    if had("REFUNDING") && status == "CANCELLED" {
        out.push(KINDS[3]);
    }
    out
}

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut say = |detail: String| {
        out.push(Violation {
            checker: NAME,
            detail,
        })
    };
    for (order_id, o) in &state.orders {
        if !o.status.is_terminal() {
            continue; // the saga checker speaks for it
        }
        let history = super::history(o);
        for what in expected(&history, o.status.as_str()) {
            let key = format!("{what}-{order_id}");
            match state.outgoing.get(&key) {
                None => say(format!(
                    "order {order_id} went {} but its buyer was never sent {what:?}",
                    history.join(" → ")
                )),
                Some(m) if m.recipient != o.customer_id => say(format!(
                    "message {key} went to {}, not to the buyer {}",
                    m.recipient, o.customer_id
                )),
                Some(_) => {}
            }
        }
    }
    for (key, m) in &state.outgoing {
        if m.channel == "in_app" {
            continue; // in the feed, which the notifications checker reads
        }
        let delivered = state.messages_delivered.get(key).copied().unwrap_or(0);
        match m.status.as_str() {
            "SENT" if delivered == 1 => {}
            "SENT" => say(format!(
                "message {key} ({} to {}) is SENT but the provider delivered it {delivered} times",
                m.channel, m.recipient
            )),
            other => say(format!(
                "message {key} is still {other} after heal ({} attempts: {}); the provider \
                 delivered it {delivered} times",
                m.attempts, m.reason
            )),
        }
    }
    for (reference, n) in &state.messages_delivered {
        if !state.outgoing.contains_key(reference) {
            say(format!(
                "the provider delivered {n} message(s) for {reference:?}, which nobody queued"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::expected;

    fn h(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn each_saga_path_promises_its_messages() {
        let happy = h(&[
            "CREATED",
            "PAYMENT_PENDING",
            "PAID",
            "SHIPPING",
            "SHIPPED",
            "DELIVERED",
        ]);
        assert_eq!(expected(&happy, "DELIVERED"), ["confirmed", "delivered"]);
        let declined = h(&["CREATED", "PAYMENT_PENDING", "PAYMENT_FAILED", "CANCELLED"]);
        assert_eq!(expected(&declined, "CANCELLED"), ["payment-failed"]);
        let undelivered = h(&[
            "CREATED",
            "PAYMENT_PENDING",
            "PAID",
            "SHIPPING",
            "DELIVERY_FAILED",
            "REFUNDING",
            "CANCELLED",
        ]);
        assert_eq!(expected(&undelivered, "CANCELLED"), ["confirmed", "refund"]);
    }
}
