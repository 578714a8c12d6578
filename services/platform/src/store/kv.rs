//! A small schema of versioned JSON values under `(table, key)`: the fixture of the store
//! conformance suite and of the platform's own tests (services have typed schemas of their
//! own). Its Postgres twin is `adapters::postgres::kv`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ports::store::{Schema, StoreError, Versioned, WorkMark};

/// What a write expects of the row it touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expected {
    /// Nothing (a blind write).
    Any,
    /// The row must not exist.
    Absent,
    /// The row must be at this version.
    At(i64),
}

impl From<Option<i64>> for Expected {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Expected::Absent, Expected::At)
    }
}

/// A write of the kv schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvWrite {
    /// Writes nothing; conflicts unless `table/key` is as `expected`.
    Check {
        table: String,
        key: String,
        expected: Expected,
    },
    /// Writes `body` to `table/key` (version + 1) if it is as `expected`; marks the work item
    /// `table/key` active or finished.
    Put {
        table: String,
        key: String,
        expected: Expected,
        body: serde_json::Value,
        active: bool,
    },
}

/// A read of the kv schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The row at `table/key`.
    Get { table: String, key: String },
}

/// The rows by `(table, key)`.
pub type KvModel = BTreeMap<(String, String), Versioned<serde_json::Value>>;

/// The kv schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvSchema;

fn check_expected(
    model: &KvModel,
    table: &str,
    key: &str,
    expected: Expected,
) -> Result<(), StoreError> {
    let current = model
        .get(&(table.to_owned(), key.to_owned()))
        .map(|v| v.version);
    let ok = match expected {
        Expected::Any => true,
        Expected::Absent => current.is_none(),
        Expected::At(v) => current == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::conflict(table, key))
    }
}

impl Schema for KvSchema {
    type Write = KvWrite;
    type Query = KvQuery;
    type Answer = Option<Versioned<serde_json::Value>>;
    type Model = KvModel;

    fn apply(model: &mut KvModel, write: KvWrite) -> Result<(), StoreError> {
        match write {
            KvWrite::Check {
                table,
                key,
                expected,
            } => check_expected(model, &table, &key, expected),
            KvWrite::Put {
                table,
                key,
                expected,
                body,
                ..
            } => {
                check_expected(model, &table, &key, expected)?;
                let k = (table, key);
                let version = model.get(&k).map_or(0, |v| v.version) + 1;
                model.insert(
                    k,
                    Versioned {
                        version,
                        value: body,
                    },
                );
                Ok(())
            }
        }
    }

    fn query(model: &KvModel, query: &KvQuery) -> Self::Answer {
        match query {
            KvQuery::Get { table, key } => model.get(&(table.clone(), key.clone())).cloned(),
        }
    }

    fn work(write: &KvWrite) -> Vec<WorkMark> {
        match write {
            KvWrite::Put {
                table, key, active, ..
            } => vec![WorkMark {
                kind: table.clone(),
                key: key.clone(),
                active: *active,
            }],
            KvWrite::Check { .. } => Vec::new(),
        }
    }
}

/// Builders for kv transactions.
pub trait KvTx {
    /// Conflict unless `table/key` is at `version` (`None`: absent).
    fn expect(self, table: &str, key: &str, version: Option<i64>) -> Self;
    /// Write `body` to `table/key`, blind.
    fn put(self, table: &str, key: &str, body: serde_json::Value, active: bool) -> Self;
    /// Write `body` to `table/key` if it is at `version` (`None`: absent).
    fn put_at(
        self,
        table: &str,
        key: &str,
        version: Option<i64>,
        body: serde_json::Value,
        active: bool,
    ) -> Self;
}

impl KvTx for crate::ports::store::Tx<KvWrite> {
    fn expect(self, table: &str, key: &str, version: Option<i64>) -> Self {
        self.write(KvWrite::Check {
            table: table.into(),
            key: key.into(),
            expected: version.into(),
        })
    }
    fn put(self, table: &str, key: &str, body: serde_json::Value, active: bool) -> Self {
        self.write(KvWrite::Put {
            table: table.into(),
            key: key.into(),
            expected: Expected::Any,
            body,
            active,
        })
    }
    fn put_at(
        self,
        table: &str,
        key: &str,
        version: Option<i64>,
        body: serde_json::Value,
        active: bool,
    ) -> Self {
        self.write(KvWrite::Put {
            table: table.into(),
            key: key.into(),
            expected: version.into(),
            body,
            active,
        })
    }
}
