//! The SQL of each service's typed store ([`super::PgSchema`]), one file per service, each
//! held to the service's in-memory model by a differential test
//! (`tests/integration/differential.rs`).

pub mod ad;
pub mod analytics;
pub mod delivery;
pub mod kv;
pub mod media;
pub mod moderation;
pub mod notification;
pub mod order;
pub mod payment;
pub mod report;
pub mod search;
pub mod user;

use platform::ports::StoreError;

/// `Conflict` on `table/key` unless exactly one row was written.
pub(crate) fn one_row(rows: u64, table: &str, key: &str) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::conflict(table, key))
    }
}
