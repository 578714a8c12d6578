//! Where the servers are, one-at-a-time execution, cluster state from metadata, and fresh
//! resources.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use adapters::{KafkaConfig, KafkaEventLog, PgStore, SchemaName};
use platform::conformance::broker_faults::{ClusterView, PartitionView};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    ClientConfig,
};
use sqlx::{Connection, PgConnection};
use tokio::{
    sync::{Mutex, MutexGuard},
    time::Instant,
};

/// The default of `DATABASE_URL`: the stack `ci/infra/up.sh` brings up.
const DATABASE_URL_DEFAULT: &str = "postgres://marketplace:marketplace@127.0.0.1:5432/marketplace";

/// The default of `KAFKA_BOOTSTRAP`.
const KAFKA_BOOTSTRAP_DEFAULT: &str = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094";

/// The brokers of the cluster and their racks (`ci/infra/kafka.sh`).
pub const BROKERS: [(i32, &str); 3] = [(1, "msk"), (2, "msk"), (3, "nsk")];

/// Bound on one metadata or watermark request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned())
}

pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| KAFKA_BOOTSTRAP_DEFAULT.to_owned())
}

/// A name nobody used before: `{prefix}_{uuid}`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

// ------------------------------------------------------------------------------ one at a time

/// Tests kill brokers: one runs at a time in this process (tests run on several threads,
/// each with its own runtime; tokio's mutex works across runtimes and does not poison).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A test's exclusive hold on the cluster; prints how long the test took when dropped.
/// Declare it first in a test so it is dropped last (after any [`crate::brokers::Outage`]).
pub struct Exclusive {
    _serial: MutexGuard<'static, ()>,
    name: &'static str,
    started: Instant,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        eprintln!(
            "[broker_faults] {} {outcome} in {:.1?}",
            self.name,
            self.started.elapsed()
        );
    }
}

/// Waits for the other tests of this binary ([`crate::faults::RealFaults::new`] then waits
/// for a healthy cluster).
pub async fn exclusive(name: &'static str) -> Exclusive {
    let serial = SERIAL.lock().await;
    let started = Instant::now();
    eprintln!("[broker_faults] {name} starts");
    Exclusive {
        _serial: serial,
        name,
        started,
    }
}

impl Exclusive {
    /// When the test started (its steps are printed relative to it).
    pub fn started(&self) -> Instant {
        self.started
    }
}

// ------------------------------------------------------------------------------ cluster state

/// Cluster metadata and watermarks, through a group-less librdkafka consumer (the port has
/// neither).
#[derive(Clone)]
pub struct Cluster {
    client: Arc<BaseConsumer>,
}

impl Cluster {
    pub fn new() -> Cluster {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .create()
            .expect("a metadata client");
        Cluster {
            client: Arc::new(client),
        }
    }

    /// One metadata request (of `topic` only, if given); `None` when it failed.
    pub async fn view(&self, topic: Option<&str>) -> Option<ClusterView> {
        let client = Arc::clone(&self.client);
        let topic = topic.map(str::to_owned);
        let metadata = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(topic.as_deref(), METADATA_TIMEOUT)
        })
        .await
        .expect("metadata task")
        .ok()?;
        let alive = metadata.brokers().iter().map(|b| b.id()).collect();
        let partitions = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| {
                t.partitions().iter().map(|p| PartitionView {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    leader: (p.leader() >= 0).then_some(p.leader()),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                })
            })
            .collect();
        Some(ClusterView { alive, partitions })
    }

    /// The high watermark of each partition of `topic`.
    pub async fn high_watermarks(&self, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let client = Arc::clone(&self.client);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    let (_low, high) = client
                        .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                        .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
                    (p, high)
                })
                .collect()
        })
        .await
        .expect("watermark task")
    }
}

// ------------------------------------------------------------------------------ resources

/// The Kafka cluster through the production adapter.
pub async fn kafka() -> KafkaEventLog {
    let bootstrap = kafka_bootstrap();
    KafkaEventLog::connect(KafkaConfig::new(bootstrap.clone()))
        .await
        .unwrap_or_else(|e| {
            panic!("Kafka at {bootstrap} must be reachable (run `bash ci/infra/up.sh`): {e}")
        })
}

/// A [`PgStore`] on a schema of its own.
pub async fn fresh_store() -> PgStore {
    let schema = SchemaName::parse(&unique("bf")).expect("unique() makes valid schema names");
    let url = database_url();
    PgStore::connect(&url, &schema)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} must be reachable: {e}"))
}

/// Closes `store` and drops its schema (not done on failure: the schema is left to look at).
pub async fn drop_store(store: PgStore) {
    store.close().await;
    let mut conn = PgConnection::connect(&database_url())
        .await
        .expect("PostgreSQL reachable to drop a test schema");
    sqlx::raw_sql(&format!("DROP SCHEMA \"{}\" CASCADE", store.schema()))
        .execute(&mut conn)
        .await
        .expect("drop test schema");
    let _ = conn.close().await;
}
