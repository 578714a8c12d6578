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
        }
    }

    /// The status named `s` (as [`OrderStatus::as_str`] writes it).
    pub fn parse(s: &str) -> Option<OrderStatus> {
        use OrderStatus::*;
        [
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
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
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
                | (Shipped, Delivered)
                | (Shipped, DeliveryFailed)
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
    pub status: OrderStatus,
    /// Every status the order has had, oldest first; `history[i]` is event `seq = i`.
    pub history: Vec<OrderStatus>,
    /// When the current status was entered (ms since the epoch), for step deadlines.
    pub status_since_ms: u64,
    /// Why the order failed, if it did.
    pub reason: String,
}

/// The `order.status.changed` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    /// `"{order_id}:{seq}"`: unique, and the same if the event is published twice.
    pub event_id: String,
    pub order_id: String,
    /// Position of this status in the order's history (0 for CREATED).
    pub seq: u32,
    pub status: OrderStatus,
    pub previous: Option<OrderStatus>,
    pub amount_minor: i64,
    pub currency: String,
}

/// Bad input at the edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidInput {
    #[error("customer_id must be 1..=64 characters of letters, digits, '-' or '_'")]
    CustomerId,
    #[error("item must be 1..=200 characters")]
    Item,
    #[error("amount_minor must be between 1 and 1000000000")]
    Amount,
    #[error("currency must be 3 capital letters (ISO 4217)")]
    Currency,
    #[error("order id must be a UUID")]
    OrderId,
}

/// A validated order request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: String,
    pub item: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// The largest amount one order may carry.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000;

impl NewOrder {
    /// Parses raw fields into a [`NewOrder`].
    pub fn parse(
        customer_id: &str,
        item: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Self, InvalidInput> {
        let id_ok = !customer_id.is_empty()
            && customer_id.len() <= 64
            && customer_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(InvalidInput::CustomerId);
        }
        let item_chars = item.chars().count();
        if item_chars == 0 || item_chars > 200 || item.chars().any(char::is_control) {
            return Err(InvalidInput::Item);
        }
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount_minor) {
            return Err(InvalidInput::Amount);
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidInput::Currency);
        }
        Ok(NewOrder {
            customer_id: customer_id.into(),
            item: item.into(),
            amount_minor,
            currency: currency.into(),
        })
    }
}

/// Parses an order id (a UUID, normalised to lower case hyphenated form).
pub fn parse_order_id(raw: &str) -> Result<String, InvalidInput> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| InvalidInput::OrderId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn new_order_accepts_valid_input() {
        let o = NewOrder::parse("cust-1", "bike", 1500, "RUB").expect("valid");
        assert_eq!(o.amount_minor, 1500);
    }

    #[test]
    fn new_order_rejects_each_bad_field() {
        assert_eq!(
            NewOrder::parse("", "bike", 1, "RUB"),
            Err(InvalidInput::CustomerId)
        );
        assert_eq!(
            NewOrder::parse("a b", "bike", 1, "RUB"),
            Err(InvalidInput::CustomerId)
        );
        assert_eq!(
            NewOrder::parse(&"x".repeat(65), "bike", 1, "RUB"),
            Err(InvalidInput::CustomerId)
        );
        assert_eq!(NewOrder::parse("c", "", 1, "RUB"), Err(InvalidInput::Item));
        assert_eq!(
            NewOrder::parse("c", "a\u{0}b", 1, "RUB"),
            Err(InvalidInput::Item)
        );
        assert_eq!(
            NewOrder::parse("c", "bike", 0, "RUB"),
            Err(InvalidInput::Amount)
        );
        assert_eq!(
            NewOrder::parse("c", "bike", -5, "RUB"),
            Err(InvalidInput::Amount)
        );
        assert_eq!(
            NewOrder::parse("c", "bike", AMOUNT_MINOR_MAX + 1, "RUB"),
            Err(InvalidInput::Amount)
        );
        assert_eq!(
            NewOrder::parse("c", "bike", 1, "rub"),
            Err(InvalidInput::Currency)
        );
        assert_eq!(
            NewOrder::parse("c", "bike", 1, "RUBL"),
            Err(InvalidInput::Currency)
        );
    }

    #[test]
    fn order_ids_are_uuids() {
        assert!(parse_order_id("not-a-uuid").is_err());
        let id = platform::ids::uuid_v4().to_string();
        assert_eq!(parse_order_id(&id.to_uppercase()), Ok(id));
    }

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
    }
}
