//! The Postgres schema a service's store lives in, parsed once at the edge so it can be
//! spliced into `CREATE SCHEMA` and `SET search_path` (identifiers cannot be bound).

use std::fmt;

/// A schema name: 1 to 63 characters of `[a-z0-9_]`, not starting with a digit or `pg_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

/// Why a schema name was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid schema name {name:?}: {reason}")]
pub struct InvalidSchemaName {
    pub name: String,
    pub reason: &'static str,
}

/// Postgres truncates identifiers longer than this (NAMEDATALEN - 1).
const SCHEMA_NAME_LEN_MAX: usize = 63;

impl SchemaName {
    /// Parses `name`.
    pub fn parse(name: &str) -> Result<SchemaName, InvalidSchemaName> {
        let refuse = |reason| {
            Err(InvalidSchemaName {
                name: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() || name.len() > SCHEMA_NAME_LEN_MAX {
            return refuse("must be 1 to 63 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return refuse("only a-z, 0-9 and _ are allowed");
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return refuse("must not start with a digit");
        }
        if name.starts_with("pg_") {
            return refuse("the pg_ prefix is reserved for system schemas");
        }
        Ok(SchemaName(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an SQL identifier (safe to splice: the charset has no quotes).
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_accepted_and_quoted() {
        for name in ["order", "payment_v2", "_scratch", "t_0123456789abcdef"] {
            let parsed = SchemaName::parse(name).expect(name);
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.quoted(), format!("\"{name}\""));
        }
    }

    #[test]
    fn names_that_could_escape_the_quotes_or_clash_are_refused() {
        let too_long = "a".repeat(64);
        for name in [
            "",
            "Order",
            "or\"der",
            "a;drop",
            "a b",
            "1st",
            "pg_catalog",
            too_long.as_str(),
        ] {
            assert!(SchemaName::parse(name).is_err(), "{name:?} was accepted");
        }
    }
}
