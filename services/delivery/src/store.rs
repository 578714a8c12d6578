//! The delivery service's typed store: one shipment per order. SQL:
//! `migrations/delivery/`; Postgres twin: `adapters::postgres::schemas::delivery`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError, Versioned, WorkMark};
use serde::{Deserialize, Serialize};

/// Work kind of shipments the worker still has courier work for.
pub const SHIPMENTS: &str = "shipments";

/// Stages after which nothing changes.
pub const FINAL_STAGES: [&str; 3] = ["DELIVERED", "FAILED", "CANCELLED"];

/// Every stage a shipment can be in: REQUESTED (not yet booked), then the courier's.
pub const STAGES: [&str; 7] = [
    "REQUESTED",
    "ACCEPTED",
    "PICKED_UP",
    "IN_TRANSIT",
    "DELIVERED",
    "FAILED",
    "CANCELLED",
];

/// A shipment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub order_id: String,
    pub address: String,
    pub stage: String,
    pub courier_id: Option<String>,
    pub cancel_requested: bool,
    /// The trace context of the request that made it ([`platform::trace`], stored form): the
    /// worker's courier calls for it run in that trace.
    #[serde(default)]
    pub trace: String,
}

impl Shipment {
    /// Whether the worker still has courier work for it.
    pub fn is_active(&self) -> bool {
        !FINAL_STAGES.contains(&self.stage.as_str())
    }
}

/// The constraints the SQL table declares.
fn check(s: &Shipment) -> Result<(), StoreError> {
    let valid = (1..=64).contains(&s.order_id.chars().count())
        && (1..=512).contains(&s.address.chars().count())
        && STAGES.contains(&s.stage.as_str())
        && s.trace.chars().count() <= platform::trace::STORED_CHARS_MAX;
    if valid {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "shipment {} breaks the shipments table's constraints",
            s.order_id
        )))
    }
}

/// A write of the delivery store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryWrite {
    /// A new shipment; conflicts if the order has one.
    Insert(Shipment),
    /// The shipment at `version`, replaced; conflicts if it is at another version.
    Update { shipment: Shipment, version: i64 },
}

/// A read of the delivery store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryQuery {
    /// The shipment of an order.
    Shipment { order_id: String },
}

/// The shipments by order id.
pub type DeliveryModel = BTreeMap<String, Versioned<Shipment>>;

/// The delivery store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliverySchema;

impl Schema for DeliverySchema {
    type Write = DeliveryWrite;
    type Query = DeliveryQuery;
    type Answer = Option<Versioned<Shipment>>;
    type Model = DeliveryModel;

    fn apply(model: &mut DeliveryModel, write: DeliveryWrite) -> Result<(), StoreError> {
        // In the order PostgreSQL checks: an insert checks the row's constraints before its
        // key; an update that finds no row at the expected version checks nothing.
        let (shipment, expected) = match write {
            DeliveryWrite::Insert(s) => (s, None),
            DeliveryWrite::Update { shipment, version } => (shipment, Some(version)),
        };
        let current = model.get(&shipment.order_id).map(|v| v.version);
        if expected.is_none() {
            check(&shipment)?;
        }
        if current != expected {
            return Err(StoreError::conflict("shipments", &shipment.order_id));
        }
        check(&shipment)?;
        let version = expected.map_or(1, |v| v + 1);
        model.insert(
            shipment.order_id.clone(),
            Versioned {
                version,
                value: shipment,
            },
        );
        Ok(())
    }

    fn query(model: &DeliveryModel, query: &DeliveryQuery) -> Self::Answer {
        match query {
            DeliveryQuery::Shipment { order_id } => model.get(order_id).cloned(),
        }
    }

    fn work(write: &DeliveryWrite) -> Vec<WorkMark> {
        let s = match write {
            DeliveryWrite::Insert(s) | DeliveryWrite::Update { shipment: s, .. } => s,
        };
        vec![WorkMark {
            kind: SHIPMENTS.into(),
            key: s.order_id.clone(),
            active: s.is_active(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_contract_value() {
        for s in STAGES {
            let p = contracts::delivery::ShipmentStage::from_api_name(s);
            assert_ne!(p, contracts::delivery::ShipmentStage::Unspecified, "{s}");
        }
    }
}
