//! Where the servers are, one-at-a-time execution, cluster health from metadata, fresh
//! resources, and reading a topic back with a deadline.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use adapters::{KafkaConfig, KafkaEventLog, PgStore, SchemaName};
use platform::ports::{
    ConsumedRecord, ConsumerConfig, EventLog, ProducedRecord, Producer, ProducerConfig, RecordAck,
};
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

/// The broker ids of the cluster (`ci/infra/kafka.sh`): 1 and 2 in rack msk, 3 in rack nsk.
pub const BROKERS: [i32; 3] = [1, 2, 3];

/// The broker of rack nsk.
pub const NSK_BROKER: i32 = 3;

/// Bound on a healthy cluster coming back: brokers alive and every ISR full again.
pub const HEAL_DEADLINE: Duration = Duration::from_secs(90);

/// Bound on reading records back through a consumer group, joining the group (and waiting
/// for a killed coordinator or leader to be replaced, ~9 s) included.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// Poll interval of the deadline loops.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

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

/// Waits for the other tests of this binary, then for a healthy cluster.
pub async fn exclusive(name: &'static str) -> Exclusive {
    let serial = SERIAL.lock().await;
    let started = Instant::now();
    eprintln!("[broker_faults] {name} starts");
    Cluster::new()
        .wait_healthy("the cluster is healthy before the test", HEAL_DEADLINE)
        .await;
    Exclusive {
        _serial: serial,
        name,
        started,
    }
}

/// Prints a step of a test with the time since the test started.
pub fn step(x: &Exclusive, what: impl std::fmt::Display) {
    eprintln!(
        "[broker_faults]   {:>6.1?} {what}",
        x.started.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------------------ cluster state

/// One partition as the cluster's metadata reports it.
#[derive(Clone, Debug)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// Has a leader and every replica in sync.
    pub fn is_full(&self) -> bool {
        self.leader >= 0 && self.isr.len() == self.replicas.len()
    }
}

/// Alive (registered, unfenced) brokers and partition states, from one metadata request.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub brokers: BTreeSet<i32>,
    pub partitions: Vec<PartitionState>,
}

impl Snapshot {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.partitions
            .iter()
            .find(|p| p.topic == topic && p.partition == partition)
    }
}

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
    pub async fn snapshot(&self, topic: Option<&str>) -> Option<Snapshot> {
        let client = Arc::clone(&self.client);
        let topic = topic.map(str::to_owned);
        let metadata = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(topic.as_deref(), METADATA_TIMEOUT)
        })
        .await
        .expect("metadata task")
        .ok()?;
        let brokers = metadata.brokers().iter().map(|b| b.id()).collect();
        let partitions = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| {
                t.partitions().iter().map(|p| PartitionState {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                })
            })
            .collect();
        Some(Snapshot {
            brokers,
            partitions,
        })
    }

    /// Polls metadata (of `topic` only, if given) until `cond` holds; panics after `limit`,
    /// showing the last snapshot.
    pub async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        topic: Option<&str>,
        mut cond: impl FnMut(&Snapshot) -> bool,
    ) -> Snapshot {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(s) = self.snapshot(topic).await {
                if cond(&s) {
                    return s;
                }
                last = Some(s);
            }
            if Instant::now() >= deadline {
                let shown = last.map(|s| {
                    let unhealthy: Vec<_> = s
                        .partitions
                        .iter()
                        .filter(|p| !p.is_full())
                        .take(10)
                        .collect();
                    format!(
                        "alive brokers {:?}; partitions not full: {unhealthy:?}",
                        s.brokers
                    )
                });
                panic!("waited {limit:?} and still not: {what}; last metadata: {shown:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Every broker alive and every partition of every topic led, with all replicas in sync.
    pub async fn wait_healthy(&self, what: &str, limit: Duration) -> Snapshot {
        self.wait_until(what, limit, None, |s| {
            s.brokers == BROKERS.into_iter().collect()
                && s.partitions.iter().all(PartitionState::is_full)
        })
        .await
    }

    /// Every partition of `topic` led, with all replicas in sync.
    pub async fn wait_topic_full(&self, topic: &str, partitions: i32) -> Snapshot {
        self.wait_until(
            &format!("every partition of {topic} has all replicas in sync"),
            HEAL_DEADLINE,
            Some(topic),
            |s| {
                let ps: Vec<_> = s.partitions.iter().filter(|p| p.topic == topic).collect();
                ps.len() == partitions as usize && ps.iter().all(|p| p.is_full())
            },
        )
        .await
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
    kafka_with(|_| {}).await
}

/// The production adapter with some of its limits changed.
pub async fn kafka_with(change: impl FnOnce(&mut KafkaConfig)) -> KafkaEventLog {
    let bootstrap = kafka_bootstrap();
    let mut config = KafkaConfig::new(bootstrap.clone());
    change(&mut config);
    KafkaEventLog::connect(config).await.unwrap_or_else(|e| {
        panic!("Kafka at {bootstrap} must be reachable (run `bash ci/infra/up.sh`): {e}")
    })
}

/// A new topic with the seed's replication (RF 3, min ISR 2), every replica in sync.
pub async fn fresh_topic(
    log: &KafkaEventLog,
    cluster: &Cluster,
    prefix: &str,
    partitions: i32,
) -> String {
    let topic = unique(prefix).replace('_', "-");
    log.ensure_topic(&topic, partitions, 3, 2)
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic}: {e}"));
    cluster.wait_topic_full(&topic, partitions).await;
    topic
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

// ------------------------------------------------------------------------------ records

/// The seed's producer (acks=all, idempotent) with the given timeouts.
pub fn producer_config(delivery_timeout: Duration, request_timeout: Duration) -> ProducerConfig {
    ProducerConfig {
        client_id: "broker-faults".into(),
        client_rack: Some("msk".into()),
        delivery_timeout,
        request_timeout,
        ..ProducerConfig::default()
    }
}

/// A record whose payload is `payload` (also its `seq` header).
pub fn record(topic: &str, key: &str, payload: &str) -> ProducedRecord {
    ProducedRecord {
        topic: topic.to_owned(),
        key: key.to_owned(),
        payload: payload.as_bytes().to_vec(),
        headers: vec![("seq".to_owned(), payload.to_owned())],
    }
}

pub fn payload_of(r: &ConsumedRecord) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

/// Sends every record, all in flight at once (started in order); panics on any failure.
pub async fn send_all(
    producer: &dyn Producer,
    records: &[ProducedRecord],
    when: &str,
) -> Vec<RecordAck> {
    let results = futures::future::join_all(records.iter().map(|r| producer.send(r.clone()))).await;
    results
        .into_iter()
        .zip(records)
        .map(|(result, r)| {
            result.unwrap_or_else(|e| {
                panic!(
                    "{when}: sending {} (key {}) with acks=all failed: {e:?}",
                    String::from_utf8_lossy(&r.payload),
                    r.key
                )
            })
        })
        .collect()
}

/// The last acknowledged offset of each partition.
pub fn last_offsets(acks: &[RecordAck]) -> BTreeMap<i32, i64> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for a in acks {
        let l = last.entry(a.partition).or_insert(a.offset);
        *l = (*l).max(a.offset);
    }
    last
}

/// The last offset below each non-zero high watermark.
pub fn below_watermarks(high: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    high.iter()
        .filter(|(_, h)| **h > 0)
        .map(|(p, h)| (*p, h - 1))
        .collect()
}

/// Reads `topic` through a new member of `config.group_id` until, on every partition of
/// `targets`, it reached the target offset; panics at [`READ_DEADLINE`]. Returns every
/// record read, in order, repeats included.
pub async fn read_until(
    log: &dyn EventLog,
    config: ConsumerConfig,
    topic: &str,
    targets: &BTreeMap<i32, i64>,
    who: &str,
) -> Vec<ConsumedRecord> {
    let group = config.group_id.clone();
    let mut consumer = log
        .consumer(config, &[topic])
        .await
        .unwrap_or_else(|e| panic!("{who}: joining group {group} on {topic} failed: {e}"));
    let deadline = Instant::now() + READ_DEADLINE;
    let mut read = Vec::new();
    let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
    let mut errors = 0usize;
    while targets
        .iter()
        .any(|(p, t)| reached.get(p).is_none_or(|r| r < t))
    {
        if Instant::now() >= deadline {
            panic!(
                "{who} did not read up to {targets:?} within {READ_DEADLINE:?}; it reached \
                 {reached:?} ({errors} retriable poll errors)"
            );
        }
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(batch) => {
                for r in &batch {
                    let at = reached.entry(r.partition).or_insert(r.offset);
                    *at = (*at).max(r.offset);
                }
                read.extend(batch);
            }
            Err(e) if e.is_retriable() => errors += 1,
            Err(e) => panic!("{who}: poll failed: {e:?}"),
        }
    }
    read
}

/// Asserts that every acknowledged record was read back, unchanged, at its position.
pub fn assert_acked_were_read(
    sent: &[ProducedRecord],
    acks: &[RecordAck],
    read: &[ConsumedRecord],
    when: &str,
) {
    let by_position: BTreeMap<(i32, i64), &ConsumedRecord> =
        read.iter().map(|r| ((r.partition, r.offset), r)).collect();
    let mut missing = Vec::new();
    for (record, ack) in sent.iter().zip(acks) {
        match by_position.get(&(ack.partition, ack.offset)) {
            None => missing.push((ack.partition, ack.offset)),
            Some(got) => assert_eq!(
                (got.key.as_str(), got.payload.as_slice()),
                (record.key.as_str(), record.payload.as_slice()),
                "{when}: the record at partition {} offset {} is not the one acknowledged there",
                ack.partition,
                ack.offset
            ),
        }
    }
    assert!(
        missing.is_empty(),
        "{when}: {} of {} acknowledged records were not read back, at (partition, offset) \
         {missing:?}",
        missing.len(),
        acks.len()
    );
}
