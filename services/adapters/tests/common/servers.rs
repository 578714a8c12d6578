//! Where the servers are, and fresh, uniquely named resources on them. Shared by the
//! `integration` and `broker_faults` test binaries (each includes it with `#[path]`).

use adapters::{KafkaConfig, KafkaEventLog, PgStore, SchemaName};
use platform::store::kv::{KvQuery, KvSchema};
use sqlx::{Connection, PgConnection};

/// The default of `DATABASE_URL`: the stack `ci/infra/up.sh` brings up.
const DATABASE_URL_DEFAULT: &str = "postgres://marketplace:marketplace@127.0.0.1:5432/marketplace";

/// The default of `KAFKA_BOOTSTRAP`.
const KAFKA_BOOTSTRAP_DEFAULT: &str = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned())
}

/// The default of `REDIS_URL`.
const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

#[allow(dead_code)] // used by `integration`, not by `broker_faults`
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| REDIS_URL_DEFAULT.to_owned())
}

pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| KAFKA_BOOTSTRAP_DEFAULT.to_owned())
}

/// A name nobody used before: `{prefix}_{uuid}` (lowercase, `_` only, fits a schema name).
/// A name unique across runs of the tests: OS randomness is what is wanted here.
#[allow(clippy::disallowed_methods)]
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A [`PgStore`] on a schema of its own.
pub struct FreshStore {
    pub store: PgStore<KvSchema>,
}

impl FreshStore {
    /// Connects to a new schema; panics (with the way out) when PostgreSQL is not there.
    pub async fn new() -> FreshStore {
        let schema = SchemaName::parse(&unique("it")).expect("unique() makes valid schema names");
        FreshStore {
            store: connect(&schema).await,
        }
    }

    /// Closes the store and drops its schema. Not done on panic: a failed test leaves its
    /// schema (`it_*`) to look at.
    pub async fn drop_schema(self) {
        self.store.close().await;
        drop_schema(self.store.schema()).await;
    }
}

pub async fn connect(schema: &SchemaName) -> PgStore<KvSchema> {
    let url = database_url();
    PgStore::<KvSchema>::connect(&url, schema)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {url} must be reachable (run `bash ci/infra/up.sh`): {}",
                chain(&e)
            )
        })
}

pub async fn drop_schema(schema: &SchemaName) {
    let mut conn = PgConnection::connect(&database_url())
        .await
        .expect("PostgreSQL reachable to drop a test schema");
    sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .expect("drop test schema");
    let _ = conn.close().await;
}

/// The Kafka cluster; panics (with the way out) when it is not there.
pub async fn kafka() -> KafkaEventLog {
    let bootstrap = kafka_bootstrap();
    KafkaEventLog::connect(KafkaConfig::new(bootstrap.clone()))
        .await
        .unwrap_or_else(|e| {
            panic!("Kafka at {bootstrap} must be reachable (run `bash ci/infra/up.sh`): {e}")
        })
}

/// A new topic with the seed's replication (RF 3, min ISR 2), ready to produce to.
pub async fn fresh_topic(log: &KafkaEventLog, prefix: &str, partitions: i32) -> String {
    let topic = unique(prefix).replace('_', "-");
    log.ensure_topic(&topic, partitions, 3, 2)
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic}: {e}"));
    topic
}

/// `error` and its sources, one per line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

/// The kv query for `table/key`.
#[allow(dead_code)] // not every test binary reads rows
pub fn get(table: &str, key: &str) -> KvQuery {
    KvQuery::Get {
        table: table.into(),
        key: key.into(),
    }
}
