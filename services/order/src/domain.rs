//! Orders, their status machine and the values parsed at the edge.

use serde::{Deserialize, Serialize};

/// Topic of order status events (key = order id).
pub const ORDER_STATUS_TOPIC: &str = platform::topics::ORDER_STATUS_CHANGED;
/// Partitions of [`ORDER_STATUS_TOPIC`].
pub const ORDER_STATUS_PARTITIONS: i32 = 6;
/// Work kind of orders whose saga still runs (claimed by one order instance at a time).
pub const ORDERS: &str = "orders";

/// The saga's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Created,
    PaymentPending,
    Paid,
    Shipping,
    Shipped,
    Delivered,
    PaymentFailed,
    DeliveryFailed,
    Refunding,
    Cancelled,
    /// The delivery deadline passed with the shipment's fate unknown: a cancel was asked of
    /// the courier, and the saga waits for its verdict (delivered after all, or cancelled).
    CancellingDelivery,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "CREATED",
            OrderStatus::PaymentPending => "PAYMENT_PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Shipping => "SHIPPING",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::DeliveryFailed => "DELIVERY_FAILED",
            OrderStatus::Refunding => "REFUNDING",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::CancellingDelivery => "CANCELLING_DELIVERY",
        }
    }

    /// Every status.
    pub const ALL: [OrderStatus; 11] = [
        OrderStatus::Created,
        OrderStatus::PaymentPending,
        OrderStatus::Paid,
        OrderStatus::Shipping,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::PaymentFailed,
        OrderStatus::DeliveryFailed,
        OrderStatus::Refunding,
        OrderStatus::Cancelled,
        OrderStatus::CancellingDelivery,
    ];

    /// The status named `s` (as [`OrderStatus::as_str`] writes it).
    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the saga is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Cancelled)
    }

    /// Whether the status machine allows `self → next`.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Created, PaymentPending)
                | (PaymentPending, Paid)
                | (PaymentPending, PaymentFailed)
                | (PaymentFailed, Cancelled)
                | (Paid, Shipping)
                | (Shipping, Shipped)
                | (Shipping, DeliveryFailed)
                | (Shipping, CancellingDelivery)
                | (Shipped, Delivered)
                | (Shipped, DeliveryFailed)
                | (Shipped, CancellingDelivery)
                | (CancellingDelivery, Delivered)
                | (CancellingDelivery, DeliveryFailed)
                | (DeliveryFailed, Refunding)
                | (Refunding, Cancelled)
        )
    }
}

/// An order as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub item: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The ad bought, and the version of it whose title (`item`) and price the order carries.
    pub ad_id: String,
    pub ad_version: i64,
    pub status: OrderStatus,
    /// Every status the order has had, oldest first; `history[i]` is event `seq = i`.
    pub history: Vec<OrderStatus>,
    /// When the current status was entered (ms since the epoch), for step deadlines.
    pub status_since_ms: u64,
    /// When the order was placed (ms since the epoch; 0 for orders placed before it was
    /// kept), for the whole saga's duration.
    #[serde(default)]
    pub created_ms: u64,
    /// Why the order failed, if it did.
    pub reason: String,
    /// The trace context of the request that created it ([`platform::trace`], stored form;
    /// empty for orders made before traces were kept): every step of its saga runs in it.
    #[serde(default)]
    pub trace: String,
}

/// The `order.status.changed` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    /// `"{order_id}:{seq}"`: unique, and the same if the event is published twice.
    pub event_id: String,
    pub order_id: String,
    /// The buyer, whom the live notifications of the order go to (empty in events published
    /// before it was added).
    #[serde(default)]
    pub customer_id: String,
    /// Position of this status in the order's history (0 for CREATED).
    pub seq: u32,
    pub status: OrderStatus,
    pub previous: Option<OrderStatus>,
    pub amount_minor: i64,
    pub currency: String,
}

pub use domain::{InvalidInput, NewOrder, OrderId, AMOUNT_MINOR_MAX};

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn status_machine_allows_only_the_saga_paths() {
        let happy = [Created, PaymentPending, Paid, Shipping, Shipped, Delivered];
        for w in happy.windows(2) {
            assert!(w[0].can_become(w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
        assert!(!Created.can_become(Paid));
        assert!(!Delivered.can_become(Cancelled));
        assert!(!Cancelled.can_become(Created));
        assert!(Delivered.is_terminal() && Cancelled.is_terminal() && !Refunding.is_terminal());
        // A delivery whose deadline passed ends as the courier says: delivered after all, or
        // cancelled (then refunded); never cancelled without its verdict.
        assert!(Shipped.can_become(CancellingDelivery));
        assert!(CancellingDelivery.can_become(Delivered));
        assert!(CancellingDelivery.can_become(DeliveryFailed));
        assert!(!CancellingDelivery.can_become(Cancelled));
        assert!(!CancellingDelivery.can_become(Refunding));
        assert!(!CancellingDelivery.is_terminal());
    }
}
