//! The payment service's typed store: payments (one per charge idempotency key) and, per
//! order, whether its money must go back. SQL: `migrations/payment/`; Postgres twin:
//! `adapters::postgres::schemas::payment`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError, Versioned, WorkMark};
use serde::{Deserialize, Serialize};

/// Work kind of payments with PSP work left.
pub const PAYMENTS: &str = "payments";

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
    /// The trace context of the Charge that made it ([`platform::trace`], stored form): the
    /// worker's PSP calls for it run in that trace.
    #[serde(default)]
    pub trace: String,
}

/// An order's payments, oldest first, and whether it asked for its money back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayments {
    /// The version of the order's row (its refund flag).
    pub version: i64,
    /// The order asked for its money back; later captures are refunded too.
    pub refund_requested: bool,
    pub payments: Vec<Versioned<Payment>>,
}

/// A write of the payment store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentWrite {
    /// The order's row: inserted (`expected` `None`, conflicts if present) or updated at
    /// version `expected`.
    PutOrder {
        order_id: String,
        refund_requested: bool,
        expected: Option<i64>,
    },
    /// A new payment of an existing order; conflicts if its key is taken.
    InsertPayment(Payment),
    /// The payment at `version`, replaced (same key and order).
    UpdatePayment { payment: Payment, version: i64 },
}

/// A read of the payment store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentQuery {
    /// A payment by its key.
    Payment { key: String },
    /// An order's payments.
    Order { order_id: String },
}

/// An answer of the payment store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentAnswer {
    Payment(Option<Versioned<Payment>>),
    Order(Option<OrderPayments>),
}

/// The payment store in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentModel {
    /// Payments by key, with their insertion sequence number.
    pub payments: BTreeMap<String, (u64, Versioned<Payment>)>,
    /// Orders' refund flags by order id.
    pub orders: BTreeMap<String, Versioned<bool>>,
    next_seq: u64,
}

/// The payment store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentSchema;

impl Schema for PaymentSchema {
    type Write = PaymentWrite;
    type Query = PaymentQuery;
    type Answer = PaymentAnswer;
    type Model = PaymentModel;

    fn apply(model: &mut PaymentModel, write: PaymentWrite) -> Result<(), StoreError> {
        match write {
            PaymentWrite::PutOrder {
                order_id,
                refund_requested,
                expected,
            } => {
                let current = model.orders.get(&order_id).map(|v| v.version);
                // An insert checks the row's constraints first; an update that finds no row
                // at the expected version checks nothing.
                if (expected.is_none() || current == expected)
                    && !(1..=64).contains(&order_id.chars().count())
                {
                    return Err(StoreError::Fatal(format!(
                        "order id {order_id:?} breaks the order_payments table's constraints"
                    )));
                }
                if current != expected {
                    return Err(StoreError::conflict("order_payments", &order_id));
                }
                model.orders.insert(
                    order_id,
                    Versioned {
                        version: expected.map_or(1, |v| v + 1),
                        value: refund_requested,
                    },
                );
            }
            PaymentWrite::InsertPayment(p) => {
                // In the order PostgreSQL checks: the row's own constraints, the key, then
                // the foreign key.
                check_payment(&p)?;
                if model.payments.contains_key(&p.key) {
                    return Err(StoreError::conflict("payments", &p.key));
                }
                if !model.orders.contains_key(&p.order_id) {
                    return Err(StoreError::Fatal(format!(
                        "payment {} of unknown order {}",
                        p.key, p.order_id
                    )));
                }
                model.next_seq += 1;
                model.payments.insert(
                    p.key.clone(),
                    (
                        model.next_seq,
                        Versioned {
                            version: 1,
                            value: p,
                        },
                    ),
                );
            }
            PaymentWrite::UpdatePayment { payment, version } => {
                let Some((_, current)) = model.payments.get(&payment.key) else {
                    return Err(StoreError::conflict("payments", &payment.key));
                };
                if current.version != version {
                    return Err(StoreError::conflict("payments", &payment.key));
                }
                if current.value.order_id != payment.order_id {
                    return Err(StoreError::Fatal(format!(
                        "payment {} cannot move to another order",
                        payment.key
                    )));
                }
                check_payment(&payment)?;
                if let Some((_, row)) = model.payments.get_mut(&payment.key) {
                    *row = Versioned {
                        version: version + 1,
                        value: payment,
                    };
                }
            }
        }
        Ok(())
    }

    fn query(model: &PaymentModel, query: &PaymentQuery) -> PaymentAnswer {
        match query {
            PaymentQuery::Payment { key } => {
                PaymentAnswer::Payment(model.payments.get(key).map(|(_, v)| v.clone()))
            }
            PaymentQuery::Order { order_id } => {
                PaymentAnswer::Order(model.orders.get(order_id).map(|o| {
                    let mut payments: Vec<_> = model
                        .payments
                        .values()
                        .filter(|(_, p)| p.value.order_id == *order_id)
                        .cloned()
                        .collect();
                    payments.sort_by_key(|(seq, _)| *seq);
                    OrderPayments {
                        version: o.version,
                        refund_requested: o.value,
                        payments: payments.into_iter().map(|(_, p)| p).collect(),
                    }
                }))
            }
        }
    }

    fn work(write: &PaymentWrite) -> Vec<WorkMark> {
        match write {
            PaymentWrite::InsertPayment(p) | PaymentWrite::UpdatePayment { payment: p, .. } => {
                vec![WorkMark {
                    kind: PAYMENTS.into(),
                    key: p.key.clone(),
                    active: p.status.needs_work(),
                }]
            }
            PaymentWrite::PutOrder { .. } => Vec::new(),
        }
    }
}

/// The row constraints the SQL table declares (key, amount, currency).
fn check_payment(p: &Payment) -> Result<(), StoreError> {
    if !(1..=128).contains(&p.key.chars().count())
        || p.amount_minor <= 0
        || p.currency.len() != 3
        || !p.currency.bytes().all(|b| b.is_ascii_uppercase())
        || p.trace.chars().count() > platform::trace::STORED_CHARS_MAX
    {
        return Err(StoreError::Fatal(format!(
            "payment {} has an invalid amount or currency",
            p.key
        )));
    }
    Ok(())
}

impl PaymentStatus {
    /// Every status.
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Pending,
        PaymentStatus::Captured,
        PaymentStatus::Declined,
        PaymentStatus::RefundPending,
        PaymentStatus::Refunded,
        PaymentStatus::Cancelled,
    ];

    /// The status named `s` (as [`PaymentStatus::as_str`] writes it).
    pub fn parse(s: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The order-level view of several payments.
pub fn aggregate(order: &OrderPayments) -> (PaymentStatus, String) {
    let payments: Vec<&Payment> = order.payments.iter().map(|p| &p.value).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_contract_value() {
        for s in PaymentStatus::ALL {
            let p = contracts::payment::PaymentStatus::from_api_name(s.as_str());
            assert_ne!(p, contracts::payment::PaymentStatus::Unspecified, "{s:?}");
        }
    }
}
