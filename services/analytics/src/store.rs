//! The analytics mart's typed store: counters by key (`status:<STATUS>` orders that entered a
//! status, `revenue:<CURRENCY>` minor units of paid orders). Increments commute, so a write
//! needs no version check (`INSERT … ON CONFLICT DO UPDATE SET value = value + by`).
//! SQL: `migrations/analytics/`; Postgres twin: `adapters::postgres::schemas::analytics`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError};
use serde::{Deserialize, Serialize};

/// A write of the mart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MartWrite {
    /// Adds `by` to the counter `key` (created at 0).
    Add { key: String, by: i64 },
}

/// A read of the mart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MartQuery {
    /// Every counter.
    All,
    /// One counter (0 when absent).
    Counter(String),
}

/// An answer of the mart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MartAnswer {
    All(BTreeMap<String, i64>),
    Counter(i64),
}

/// `status:<NAME>` or `revenue:<NAME>`, NAME 1..=32 of `A-Z` and `_` (the table's CHECK).
pub fn valid_key(key: &str) -> bool {
    let name = key
        .strip_prefix("status:")
        .or_else(|| key.strip_prefix("revenue:"));
    name.is_some_and(|n| {
        (1..=32).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    })
}

/// The mart's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct MartSchema;

impl Schema for MartSchema {
    type Write = MartWrite;
    type Query = MartQuery;
    type Answer = MartAnswer;
    type Model = BTreeMap<String, i64>;

    fn apply(model: &mut Self::Model, write: MartWrite) -> Result<(), StoreError> {
        let MartWrite::Add { key, by } = write;
        if !valid_key(&key) {
            return Err(StoreError::Fatal(format!(
                "mart key {key:?} is not status:/revenue:<NAME>"
            )));
        }
        let counter = model.entry(key.clone()).or_insert(0);
        *counter = counter
            .checked_add(by)
            .ok_or_else(|| StoreError::Fatal(format!("mart counter {key} overflows")))?;
        Ok(())
    }

    fn query(model: &Self::Model, query: &MartQuery) -> MartAnswer {
        match query {
            MartQuery::All => MartAnswer::All(model.clone()),
            MartQuery::Counter(key) => MartAnswer::Counter(model.get(key).copied().unwrap_or(0)),
        }
    }
}
