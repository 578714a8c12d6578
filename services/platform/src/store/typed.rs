//! Typed records on top of the JSON store.

use serde::de::DeserializeOwned;

use crate::ports::store::{Store, StoreError};

/// A decoded record with the version to put in the next [`crate::ports::Tx::expect`].
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<T> {
    pub version: i64,
    pub value: T,
}

/// Reads and decodes `table/key`.
pub async fn load<T: DeserializeOwned>(
    store: &dyn Store,
    table: &str,
    key: &str,
) -> Result<Option<Loaded<T>>, StoreError> {
    match store.get(table, key).await? {
        None => Ok(None),
        Some(v) => {
            let value = serde_json::from_value(v.body)
                .map_err(|e| StoreError::Fatal(format!("{table}/{key} does not decode: {e}")))?;
            Ok(Some(Loaded {
                version: v.version,
                value,
            }))
        }
    }
}
