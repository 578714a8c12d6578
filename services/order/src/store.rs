//! The order service's typed store: orders and the create requests' idempotency keys. SQL:
//! `migrations/order/`; Postgres twin: `adapters::postgres::schemas::order`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError, Versioned, WorkMark};
use serde::{Deserialize, Serialize};

use crate::domain::{Order, ORDERS};

/// A write of the order store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderWrite {
    /// A new order created by the request with idempotency key `request_key`; conflicts if
    /// the order or the key exists.
    Create { order: Order, request_key: String },
    /// The order at `version`, replaced; conflicts if it is at another version.
    Update { order: Order, version: i64 },
}

/// A read of the order store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderQuery {
    /// An order by id.
    Order { order_id: String },
    /// The order a create request's idempotency key made.
    ByRequest { request_key: String },
}

/// The order store in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderModel {
    pub orders: BTreeMap<String, Versioned<Order>>,
    /// Create requests' idempotency keys → order id.
    pub requests: BTreeMap<String, String>,
}

/// The order store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderSchema;

impl Schema for OrderSchema {
    type Write = OrderWrite;
    type Query = OrderQuery;
    type Answer = Option<Versioned<Order>>;
    type Model = OrderModel;

    fn apply(model: &mut OrderModel, write: OrderWrite) -> Result<(), StoreError> {
        match write {
            OrderWrite::Create { order, request_key } => {
                // In the order PostgreSQL checks: the row's constraints, then its key, then
                // the request's key.
                check(&order)?;
                if model.orders.contains_key(&order.order_id) {
                    return Err(StoreError::conflict("orders", &order.order_id));
                }
                if !(1..=128).contains(&request_key.chars().count()) {
                    return Err(StoreError::Fatal(format!(
                        "request key of order {} breaks the order_requests table's constraints",
                        order.order_id
                    )));
                }
                if model.requests.contains_key(&request_key) {
                    return Err(StoreError::conflict("order_requests", &request_key));
                }
                model.requests.insert(request_key, order.order_id.clone());
                model.orders.insert(
                    order.order_id.clone(),
                    Versioned {
                        version: 1,
                        value: order,
                    },
                );
            }
            OrderWrite::Update { order, version } => {
                let current = model.orders.get(&order.order_id).map(|o| o.version);
                if current != Some(version) {
                    return Err(StoreError::conflict("orders", &order.order_id));
                }
                check(&order)?;
                model.orders.insert(
                    order.order_id.clone(),
                    Versioned {
                        version: version + 1,
                        value: order,
                    },
                );
            }
        }
        Ok(())
    }

    fn query(model: &OrderModel, query: &OrderQuery) -> Self::Answer {
        match query {
            OrderQuery::Order { order_id } => model.orders.get(order_id).cloned(),
            OrderQuery::ByRequest { request_key } => model
                .requests
                .get(request_key)
                .and_then(|id| model.orders.get(id))
                .cloned(),
        }
    }

    fn work(write: &OrderWrite) -> Vec<WorkMark> {
        let order = match write {
            OrderWrite::Create { order, .. } | OrderWrite::Update { order, .. } => order,
        };
        vec![WorkMark {
            kind: ORDERS.into(),
            key: order.order_id.clone(),
            active: !order.status.is_terminal(),
        }]
    }
}

/// The constraints the SQL table declares.
fn check(order: &Order) -> Result<(), StoreError> {
    let valid = uuid::Uuid::parse_str(&order.order_id)
        .is_ok_and(|u| u.to_string() == order.order_id)
        && (1..=domain::AMOUNT_MINOR_MAX).contains(&order.amount_minor)
        && order.currency.len() == 3
        && order.currency.bytes().all(|b| b.is_ascii_uppercase())
        && order.history.last() == Some(&order.status)
        && (1..=64).contains(&order.customer_id.chars().count())
        && (1..=200).contains(&order.item.chars().count())
        && order.ad_id.chars().count() <= 64
        && order.ad_version >= 0
        && order.trace.chars().count() <= platform::trace::STORED_CHARS_MAX;
    if valid {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "order {} breaks the orders table's constraints",
            order.order_id
        )))
    }
}
