//! Payment records in the store.

use serde::{Deserialize, Serialize};

/// Table of payments, keyed by the caller's idempotency key.
pub const PAYMENTS: &str = "payments";
/// Table of per-order payment lists, keyed by order id.
pub const ORDER_PAYMENTS: &str = "order_payments";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Accepted; the PSP has not answered yet.
    Pending,
    Captured,
    Declined,
    /// A refund is owed and not yet confirmed by the PSP.
    RefundPending,
    Refunded,
    /// Cancelled before capture (a refund was requested and the PSP declined).
    Cancelled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Captured => "CAPTURED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::RefundPending => "REFUND_PENDING",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Cancelled => "CANCELLED",
        }
    }
    /// Whether the worker still has PSP work for it.
    pub fn needs_work(self) -> bool {
        matches!(self, PaymentStatus::Pending | PaymentStatus::RefundPending)
    }
}

/// One payment attempt for an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub key: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: PaymentStatus,
    /// The PSP's charge id once known.
    pub charge_id: Option<String>,
    /// Refund when captured (set by `Refund` while the charge is in flight).
    pub refund_requested: bool,
    pub reason: String,
}

/// The payments of one order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayments {
    pub keys: Vec<String>,
    /// The order asked for its money back; later captures are refunded too.
    pub refund_requested: bool,
}

/// The order-level view of several payments.
pub fn aggregate(order: &OrderPayments, payments: &[Payment]) -> (PaymentStatus, String) {
    let any = |s: PaymentStatus| payments.iter().any(|p| p.status == s);
    if order.refund_requested {
        if any(PaymentStatus::Pending)
            || any(PaymentStatus::RefundPending)
            || any(PaymentStatus::Captured)
        {
            return (PaymentStatus::RefundPending, String::new());
        }
        return (PaymentStatus::Refunded, String::new());
    }
    if any(PaymentStatus::Captured) {
        (PaymentStatus::Captured, String::new())
    } else if any(PaymentStatus::Pending) {
        (PaymentStatus::Pending, String::new())
    } else {
        let reason = payments
            .last()
            .map(|p| p.reason.clone())
            .unwrap_or_default();
        (PaymentStatus::Declined, reason)
    }
}
