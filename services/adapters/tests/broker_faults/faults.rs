//! [`RealFaults`]: the suite's [`BrokerFaults`] on the real cluster — brokers SIGKILLed and
//! restarted through `ci/infra/kafka.sh` ([`Outage`]), state from cluster metadata
//! ([`Cluster`]), a consumer that dies in a child process ([`crate::child`]), follower-fetch
//! evidence from librdkafka's statistics, and the leader's own answer through a producer
//! without retries.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use adapters::KafkaEventLog;
use anyhow::{anyhow, Context as _};
use async_trait::async_trait;
use conformance::broker_faults::{
    wait_for_view, wait_until_healthy, BrokerFaults, BrokerId, BrokerInfo, ClusterView,
    FetchesServed, MortalConsumer, HEAL_DEADLINE,
};
use platform::ports::{ConsumerConfig, EventLog, EventLogError, ProducedRecord, RecordAck};
use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, Consumer as _, ConsumerContext},
    error::KafkaError,
    message::Message,
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
    util::Timeout,
    ClientConfig,
};
use tokio::time::Instant;

use crate::{
    brokers::Outage,
    child::ChildConsumer,
    servers::{kafka, kafka_bootstrap, unique},
    support::{Cluster, Exclusive, BROKERS},
};

/// Bound on the statistics showing where every partition is fetched from, records included.
const FETCH_EVIDENCE_DEADLINE: Duration = Duration::from_secs(60);

/// How often librdkafka reports statistics to the evidence reader.
const STATISTICS_INTERVAL_MS: &str = "200";

/// Bound on the single-attempt probe send.
const SINGLE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The real cluster, for one test.
pub struct RealFaults {
    log: Arc<KafkaEventLog>,
    cluster: Cluster,
    /// The brokers this test killed; restarted by [`Outage`]'s drop if the test fails.
    /// A tokio mutex: held across the blocking kill/start of a broker.
    outage: tokio::sync::Mutex<Outage>,
    /// Topics made for the test, deleted by [`RealFaults::delete_topics`].
    topics: Mutex<Vec<String>>,
    started: Instant,
}

impl RealFaults {
    /// The cluster for the test holding `x`, once it is healthy (every broker alive, every
    /// in-sync replica set full).
    pub async fn new(x: &Exclusive) -> RealFaults {
        let faults = RealFaults {
            log: Arc::new(kafka().await),
            cluster: Cluster::new(),
            outage: tokio::sync::Mutex::new(Outage::new()),
            topics: Mutex::default(),
            started: x.started(),
        };
        wait_until_healthy(&faults, "the cluster is healthy before the test").await;
        faults
    }

    /// The event log the scenarios use: the production adapter.
    pub fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    /// Deletes the topics made for the test (not done on failure: they are left to look at).
    pub async fn delete_topics(&self) {
        let topics =
            std::mem::take(&mut *self.topics.lock().unwrap_or_else(PoisonError::into_inner));
        for topic in topics {
            self.log.delete_topic(&topic).await.expect("delete topic");
        }
    }
}

impl RealFaults {
    /// Remembers `topic` for [`RealFaults::delete_topics`] and waits until each of its `partitions` has
    /// every replica in sync.
    async fn tracked_in_sync(&self, topic: String, partitions: i32) -> String {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(topic.clone());
        wait_for_view(
            self,
            &format!("every partition of {topic} has all replicas in sync"),
            Some(&topic),
            HEAL_DEADLINE,
            |v| {
                let ps = v.topic(&topic);
                ps.len() == partitions as usize && ps.iter().all(|p| p.is_full())
            },
        )
        .await;
        topic
    }
}

#[async_trait]
impl BrokerFaults for RealFaults {
    fn brokers(&self) -> Vec<BrokerInfo> {
        BROKERS
            .iter()
            .map(|(id, rack)| BrokerInfo {
                id: *id,
                rack: (*rack).to_owned(),
            })
            .collect()
    }

    async fn kill_broker(&self, broker: BrokerId) -> anyhow::Result<()> {
        self.outage
            .lock()
            .await
            .kill(broker)
            .await
            .map_err(|e| anyhow!(e))
    }

    async fn pause_broker(&self, broker: BrokerId) -> anyhow::Result<()> {
        self.outage
            .lock()
            .await
            .pause(broker)
            .await
            .map_err(|e| anyhow!(e))
    }

    async fn resume_broker(&self, broker: BrokerId) -> anyhow::Result<()> {
        self.outage
            .lock()
            .await
            .resume(broker)
            .await
            .map_err(|e| anyhow!(e))
    }

    async fn restart_killed_brokers(&self) -> anyhow::Result<()> {
        self.outage
            .lock()
            .await
            .heal()
            .await
            .map_err(|e| anyhow!(e))
    }

    async fn cluster_view(&self, topic: Option<&str>) -> Option<ClusterView> {
        self.cluster.view(topic).await
    }

    async fn high_watermarks(&self, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
        let partitions = self
            .cluster
            .view(Some(topic))
            .await
            .context("metadata")?
            .partitions
            .iter()
            .filter(|p| p.topic == topic)
            .count();
        Ok(self
            .cluster
            .high_watermarks(topic, i32::try_from(partitions)?)
            .await)
    }

    async fn fresh_topic(&self, prefix: &str, partitions: i32) -> anyhow::Result<String> {
        let topic = unique(prefix).replace('_', "-");
        self.log
            .ensure_topic(&topic, partitions, 3, 2)
            .await
            .with_context(|| format!("creating topic {topic}"))?;
        Ok(self.tracked_in_sync(topic, partitions).await)
    }

    async fn fresh_lossy_topic(&self, prefix: &str) -> anyhow::Result<String> {
        let topic = unique(prefix).replace('_', "-");
        self.log
            .ensure_topic_with(
                &topic,
                1,
                3,
                1,
                &[("unclean.leader.election.enable".into(), "true".into())],
            )
            .await
            .with_context(|| format!("creating topic {topic}"))?;
        Ok(self.tracked_in_sync(topic, 1).await)
    }

    async fn group_coordinated_by(&self, prefix: &str, broker: BrokerId) -> anyhow::Result<String> {
        // Kafka places a group's offsets (and its coordinator) on partition
        // abs(javaHashCode(group id)) % (partitions of __consumer_offsets).
        // The offsets topic exists once some group looked its coordinator up: look one up.
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("group.id", unique("coordinator-probe"))
            .create()
            .context("a coordinator probe")?;
        // Blocking librdkafka call, off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut partitions = rdkafka::TopicPartitionList::new();
            partitions.add_partition("__consumer_offsets", 0);
            probe.committed_offsets(partitions, Duration::from_secs(30))
        })
        .await
        .context("coordinator probe task")?
        .context("a coordinator lookup")?;
        // A broker that restarted leads none of them until the preferred-leader rebalance
        // (every 15 s) hands its partitions back: wait for one.
        let view = wait_for_view(
            self,
            &format!("broker {broker} leads a partition of __consumer_offsets"),
            Some("__consumer_offsets"),
            HEAL_DEADLINE,
            |v| {
                v.topic("__consumer_offsets")
                    .iter()
                    .any(|p| p.leader == Some(broker))
            },
        )
        .await;
        let offsets = view.topic("__consumer_offsets");
        anyhow::ensure!(!offsets.is_empty(), "__consumer_offsets has no partitions");
        for _ in 0..10_000 {
            let group = unique(prefix);
            let hash = group
                .encode_utf16()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
            let hash = if hash == i32::MIN { 0 } else { hash.abs() };
            let partition = hash % offsets.len() as i32;
            if offsets
                .iter()
                .any(|p| p.partition == partition && p.leader == Some(broker))
            {
                return Ok(group);
            }
        }
        Err(anyhow!(
            "no group id found whose coordinator is broker {broker}"
        ))
    }

    async fn mortal_consumer(
        &self,
        config: ConsumerConfig,
        topic: &str,
    ) -> Result<Box<dyn MortalConsumer>, EventLogError> {
        Ok(Box::new(ChildConsumer::spawn(&config, topic).await?))
    }

    async fn fetches_served(
        &self,
        topic: &str,
        client_rack: &str,
        until: &BTreeMap<i32, i64>,
    ) -> anyhow::Result<BTreeMap<BrokerId, FetchesServed>> {
        let placement = fetch_placement(topic, client_rack, until).await?;
        let mut served: BTreeMap<BrokerId, FetchesServed> = BTreeMap::new();
        for (leader, broker) in placement.values() {
            let s = served.entry(*broker).or_default();
            if leader == broker {
                s.as_leader += 1;
            } else {
                s.as_follower += 1;
            }
        }
        self.step(&format!(
            "librdkafka statistics of a consumer in rack {client_rack}, partition -> (leader, \
             fetched from): {placement:?}"
        ));
        Ok(served)
    }

    async fn single_attempt_send(
        &self,
        record: ProducedRecord,
    ) -> Option<Result<RecordAck, EventLogError>> {
        // The seed's idempotent producer retries NOT_ENOUGH_REPLICAS until its delivery
        // timeout; with retries (and so idempotence) off, the first answer comes back.
        let raw: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("retries", "0")
            .set("message.timeout.ms", "5000")
            .create()
            .expect("a producer without retries");
        let answer = raw
            .send(
                FutureRecord::to(&record.topic)
                    .key(&record.key)
                    .payload(&record.payload),
                Timeout::After(SINGLE_ATTEMPT_TIMEOUT),
            )
            .await;
        Some(match answer {
            Ok(delivery) => Ok(RecordAck {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::NotEnoughReplicas
                    | RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
                ),
                _,
            )) => Err(EventLogError::NotEnoughReplicas),
            Err((e, _)) => Err(EventLogError::Fatal(format!(
                "single attempt without retries: {e}"
            ))),
        })
    }

    fn step(&self, what: &str) {
        eprintln!(
            "[broker_faults]   {:>6.1?} {what}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Keeps librdkafka's latest statistics (JSON).
#[derive(Clone, Default)]
struct Stats(Arc<Mutex<Option<serde_json::Value>>>);

impl ClientContext for Stats {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(value) = serde_json::from_slice(statistics) {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        }
    }
}

impl ConsumerContext for Stats {}

/// Per partition of `topic` in `stats`: (leader, broker fetched from).
fn fetch_brokers(stats: &serde_json::Value, topic: &str) -> BTreeMap<i32, (i32, i32)> {
    let Some(partitions) = stats["topics"][topic]["partitions"].as_object() else {
        return BTreeMap::new();
    };
    let id = |v: &serde_json::Value| v.as_i64().and_then(|i| i32::try_from(i).ok()).unwrap_or(-1);
    partitions
        .iter()
        .filter_map(|(p, v)| {
            let p: i32 = p.parse().ok()?;
            (p >= 0).then(|| (p, (id(&v["leader"]), id(&v["broker"]))))
        })
        .collect()
}

/// Reads `topic` as a new group member in `client_rack`, with statistics on, until it read
/// up to `until` and the statistics place every partition on a broker of that rack (or the
/// deadline passed); returns the last placement, partition -> (leader, fetched from).
async fn fetch_placement(
    topic: &str,
    client_rack: &str,
    until: &BTreeMap<i32, i64>,
) -> anyhow::Result<BTreeMap<i32, (i32, i32)>> {
    let stats = Stats::default();
    let observer: BaseConsumer<Stats> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("bf_rack_stats"))
        .set("client.rack", client_rack)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(stats.clone())
        .context("a consumer with statistics")?;
    observer.subscribe(&[topic]).context("subscribe")?;
    let in_rack: BTreeSet<i32> = BROKERS
        .iter()
        .filter(|(_, rack)| *rack == client_rack)
        .map(|(id, _)| *id)
        .collect();
    let (topic, until) = (topic.to_owned(), until.clone());
    tokio::task::spawn_blocking(move || {
        let deadline = tokio::time::Instant::now() + FETCH_EVIDENCE_DEADLINE;
        let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
        loop {
            if let Some(Ok(m)) = observer.poll(Duration::from_millis(100)) {
                let at = reached.entry(m.partition()).or_insert(m.offset());
                *at = (*at).max(m.offset());
            }
            let placement = stats
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|s| fetch_brokers(s, &topic))
                .unwrap_or_default();
            let read_all = until
                .iter()
                .all(|(p, t)| reached.get(p).is_some_and(|r| r >= t));
            // Partitions without records to read are not fetched from anywhere in particular.
            let placement: BTreeMap<i32, (i32, i32)> = placement
                .into_iter()
                .filter(|(p, _)| until.contains_key(p))
                .collect();
            let placed_in_rack = placement.len() == until.len()
                && placement.values().all(|(_, b)| in_rack.contains(b));
            if (read_all && placed_in_rack) || tokio::time::Instant::now() >= deadline {
                return placement;
            }
        }
    })
    .await
    .context("statistics reader task")
}
