//! The one place sqlx errors become [`StoreError`]s, and the start-up error of [`super::PgStore`].

use platform::ports::StoreError;
use sqlx::migrate::MigrateError;

use super::schema::{InvalidSchemaName, SchemaName};

/// Why [`super::PgStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    InvalidSchemaName(#[from] InvalidSchemaName),
    #[error("invalid database URL")]
    Url(#[source] sqlx::Error),
    #[error("cannot reach the database to create schema {schema}")]
    CreateSchema {
        schema: SchemaName,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot open the connection pool for schema {schema}")]
    Pool {
        schema: SchemaName,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot run the platform migrations in schema {schema}")]
    Migrate {
        schema: SchemaName,
        #[source]
        source: MigrateError,
    },
}

/// SQLSTATE classes after which a retry can succeed: connection exception (08), transaction
/// rollback: serialization failure, deadlock (40), insufficient resources (53), operator
/// intervention: statement timeout, shutdown (57), system error (58).
const RETRIABLE_SQLSTATE_CLASSES: [&str; 5] = ["08", "40", "53", "57", "58"];

/// SQLSTATEs outside those classes that are transient too: lock not available,
/// idle-in-transaction timeout.
const RETRIABLE_SQLSTATES: [&str; 2] = ["55P03", "25P03"];

/// Maps `error`, raised while doing `what`, onto the port's error.
///
/// `Unavailable` means "may or may not have happened", which is exactly right for a commit
/// whose reply was lost, and harmless for reads.
pub(crate) fn store_error(what: &str, error: sqlx::Error) -> StoreError {
    let message = format!("{what}: {error}");
    let retriable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            RETRIABLE_SQLSTATES.contains(&code.as_ref())
                || RETRIABLE_SQLSTATE_CLASSES
                    .iter()
                    .any(|class| code.starts_with(class))
        }),
        _ => false,
    };
    if retriable {
        tracing::debug!(%message, "store call failed, retriable");
        StoreError::Unavailable(message)
    } else {
        StoreError::Fatal(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_exhausted_pools_are_unavailable() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(
            store_error("commit", io),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store_error("get", sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn bugs_are_fatal() {
        assert!(matches!(
            store_error("get", sqlx::Error::RowNotFound),
            StoreError::Fatal(_)
        ));
        assert!(matches!(
            store_error("get", sqlx::Error::ColumnNotFound("body".into())),
            StoreError::Fatal(_)
        ));
    }
}
