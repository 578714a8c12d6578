//! [`KafkaEventLog`]: the [`EventLog`] port on librdkafka (crate `rdkafka`, vendored build).
//!
//! Producers and consumers take the port's configuration as is (acks, idempotence, rack,
//! timeouts, group, auto-commit); see `properties` for the exact librdkafka properties. Topics are
//! not part of the port: [`KafkaEventLog::ensure_topic`] creates them at deploy / test time.

mod consumer;
mod error;
mod producer;
mod properties;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use platform::ports::{
    Consumer, ConsumerConfig, EventLog, EventLogError, Producer, ProducerConfig,
};
use rdkafka::{
    admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    },
    client::DefaultClientContext,
    consumer::{Consumer as _, StreamConsumer},
    metadata::Metadata,
    producer::FutureProducer,
    types::RDKafkaErrorCode,
};

pub use consumer::KafkaConsumer;
use error::{event_log_error, from_code};
pub use producer::KafkaProducer;

/// Cluster address and the adapter's own limits.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port,...` of some brokers.
    pub bootstrap_servers: String,
    /// Bound on one admin or metadata request.
    pub admin_timeout: Duration,
    /// How long [`KafkaEventLog::ensure_topic`] waits for every partition to have a leader and
    /// enough in-sync replicas.
    pub topic_ready_timeout: Duration,
    /// Bound on one consumer offset commit.
    pub commit_timeout: Duration,
    /// Most records one [`Consumer::poll`] returns.
    pub records_per_poll_max: usize,
    /// How long a send waits for room in librdkafka's local queue.
    pub producer_queue_timeout: Duration,
}

impl KafkaConfig {
    /// Defaults for the cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            admin_timeout: Duration::from_secs(10),
            topic_ready_timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(10),
            records_per_poll_max: 500,
            producer_queue_timeout: Duration::from_secs(5),
        }
    }
}

/// Poll interval while waiting for a new topic's partitions to get leaders.
const TOPIC_READY_POLL: Duration = Duration::from_millis(100);

/// The event log of one Kafka cluster.
#[derive(Clone)]
pub struct KafkaEventLog {
    config: KafkaConfig,
    /// Admin and metadata requests; shared with the blocking tasks that fetch metadata.
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl KafkaEventLog {
    /// Connects to the cluster and checks that it answers a metadata request.
    #[tracing::instrument(skip_all, fields(bootstrap = %config.bootstrap_servers))]
    pub async fn connect(config: KafkaConfig) -> Result<Self, EventLogError> {
        let admin: AdminClient<DefaultClientContext> = properties::admin(&config.bootstrap_servers)
            .create()
            .map_err(|e| event_log_error("admin client", "", &e))?;
        let log = KafkaEventLog {
            config,
            admin: Arc::new(admin),
        };
        let metadata = log.metadata(None).await?;
        tracing::info!(brokers = metadata.brokers().len(), "event log reachable");
        Ok(log)
    }

    /// Creates `topic` if missing (with `min.insync.replicas` and unclean leader election
    /// off) and waits until every partition has a leader and `min_insync` in-sync replicas.
    /// An existing topic with another partition count is an error.
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        min_insync: i32,
    ) -> Result<(), EventLogError> {
        self.ensure_topic_with(topic, partitions, replication_factor, min_insync, &[])
            .await
    }

    /// Ensures every topic of the list (`topics.tsv`) with its configs.
    pub async fn ensure_listed_topics(&self) -> Result<(), EventLogError> {
        for t in platform::topics::all() {
            self.ensure_topic_with(
                &t.name,
                t.partitions,
                platform::topics::REPLICATION_FACTOR,
                platform::topics::MIN_INSYNC_REPLICAS,
                &t.configs,
            )
            .await?;
        }
        Ok(())
    }

    /// [`KafkaEventLog::ensure_topic`] with topic `configs` (e.g. `retention.ms`): set on
    /// creation, and set again on a topic that exists (an `AlterConfigs` that states every
    /// config this adapter manages, so one changed in the list reaches the cluster).
    #[tracing::instrument(skip(self))]
    pub async fn ensure_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        min_insync: i32,
        configs: &[(String, String)],
    ) -> Result<(), EventLogError> {
        let min_insync_text = min_insync.to_string();
        let mut settings: Vec<(&str, &str)> = vec![
            ("min.insync.replicas", &min_insync_text),
            ("unclean.leader.election.enable", "false"),
        ];
        for (k, v) in configs {
            match settings.iter_mut().find(|(sk, _)| sk == k) {
                Some(s) => s.1 = v,
                None => settings.push((k, v)),
            }
        }
        let mut new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(replication_factor),
        );
        for (k, v) in &settings {
            new_topic = new_topic.set(k, v);
        }
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.admin_timeout))
            .operation_timeout(Some(self.config.admin_timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| event_log_error("create topic", topic, &e))?;
        let mut existed = false;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
                Err((_, code)) => return Err(from_code("create topic", topic, code)),
            }
        }

        if existed && !configs.is_empty() {
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
            for (k, v) in &settings {
                alter = alter.set(k, v);
            }
            for result in self
                .admin
                .alter_configs([&alter], &options)
                .await
                .map_err(|e| event_log_error("alter topic configs", topic, &e))?
            {
                if let Err((_, code)) = result {
                    return Err(from_code("alter topic configs", topic, code));
                }
            }
        }
        if !configs.is_empty() {
            // Read back what the brokers hold: a change reaches them through the metadata
            // log a moment later, and the legacy AlterConfigs answers success for a name the
            // cluster then ignores.
            let deadline = tokio::time::Instant::now() + self.config.admin_timeout;
            loop {
                let held = self.topic_configs(topic).await?;
                let differs = configs.iter().find(|(k, v)| held.get(k) != Some(v));
                let Some((k, v)) = differs else { break };
                if tokio::time::Instant::now() >= deadline {
                    return Err(EventLogError::Fatal(format!(
                        "topic {topic}: the cluster holds {k}={:?}, not {v:?}",
                        held.get(k)
                    )));
                }
                tokio::time::sleep(TOPIC_READY_POLL).await;
            }
        }

        let deadline = tokio::time::Instant::now() + self.config.topic_ready_timeout;
        loop {
            let metadata = self.metadata(Some(topic)).await?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| {
                    let ready = t.partitions().iter().all(|p| {
                        p.error().is_none()
                            && p.leader() >= 0
                            && p.isr().len() >= usize::try_from(min_insync).unwrap_or(0)
                    });
                    (t.partitions().len(), ready)
                });
            match found {
                Some((count, _)) if existed && count > 0 && count != partitions as usize => {
                    return Err(EventLogError::Fatal(format!(
                        "topic {topic} exists with {count} partitions, not {partitions}"
                    )));
                }
                Some((count, true)) if count == partitions as usize => return Ok(()),
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EventLogError::Timeout(format!(
                    "topic {topic} not ready within {:?}",
                    self.config.topic_ready_timeout
                )));
            }
            tokio::time::sleep(TOPIC_READY_POLL).await;
        }
    }

    /// The configs of `topic` the cluster reports, by name (defaults included).
    pub async fn topic_configs(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, EventLogError> {
        let options = AdminOptions::new().request_timeout(Some(self.config.admin_timeout));
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await
            .map_err(|e| event_log_error("describe topic configs", topic, &e))?;
        let mut out = std::collections::BTreeMap::new();
        for result in results {
            let resource =
                result.map_err(|code| from_code("describe topic configs", topic, code))?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    out.insert(entry.name, value);
                }
            }
        }
        Ok(out)
    }

    /// Deletes `topic` (tests clean up after themselves with it).
    pub async fn delete_topic(&self, topic: &str) -> Result<(), EventLogError> {
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.admin_timeout))
            .operation_timeout(Some(self.config.admin_timeout));
        let results = self
            .admin
            .delete_topics(&[topic], &options)
            .await
            .map_err(|e| event_log_error("delete topic", topic, &e))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(from_code("delete topic", topic, code));
            }
        }
        Ok(())
    }

    /// Commits offsets at the current end of every partition of `topics` for `group` (a group
    /// that has not started yet): when it starts it reads only what comes after, not the
    /// topics' history. For benchmarks and tests that share a long-lived cluster.
    pub async fn start_group_at_end(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<(), EventLogError> {
        use rdkafka::{consumer::CommitMode, Offset, TopicPartitionList};
        let consumer: rdkafka::consumer::BaseConsumer =
            properties::consumer(&self.config.bootstrap_servers, &ConsumerConfig::new(group))
                .create()
                .map_err(|e| event_log_error("consumer", group, &e))?;
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let timeout = self.config.admin_timeout;
        // Blocking librdkafka calls; production adapters never run in the simulation.
        #[allow(clippy::disallowed_methods)]
        tokio::task::spawn_blocking(move || {
            let mut ends = TopicPartitionList::new();
            for topic in &topics {
                let metadata = consumer
                    .fetch_metadata(Some(topic), timeout)
                    .map_err(|e| event_log_error("fetch metadata", topic, &e))?;
                for t in metadata.topics() {
                    for p in t.partitions() {
                        let (_, high) = consumer
                            .fetch_watermarks(topic, p.id(), timeout)
                            .map_err(|e| event_log_error("fetch watermarks", topic, &e))?;
                        ends.add_partition_offset(topic, p.id(), Offset::Offset(high))
                            .map_err(|e| event_log_error("offsets", topic, &e))?;
                    }
                }
            }
            consumer
                .commit(&ends, CommitMode::Sync)
                .map_err(|e| event_log_error("commit", "", &e))
        })
        .await
        .map_err(|join| EventLogError::Fatal(format!("commit task failed: {join}")))?
    }

    /// Whether the cluster answers a metadata request: the number of brokers it lists.
    pub async fn ping(&self) -> Result<usize, EventLogError> {
        Ok(self.metadata(None).await?.brokers().len())
    }

    /// Cluster metadata (of `topic` only, if given), fetched on a blocking thread.
    async fn metadata(&self, topic: Option<&str>) -> Result<Metadata, EventLogError> {
        let admin = Arc::clone(&self.admin);
        let owned_topic = topic.map(str::to_owned);
        let timeout = self.config.admin_timeout;
        // A blocking librdkafka call; production adapters never run in the simulation.
        #[allow(clippy::disallowed_methods)]
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(owned_topic.as_deref(), timeout)
        })
        .await
        .map_err(|join| EventLogError::Fatal(format!("metadata task failed: {join}")))?
        .map_err(|e| event_log_error("fetch metadata", topic.unwrap_or(""), &e))
    }
}

#[async_trait]
impl EventLog for KafkaEventLog {
    async fn producer(&self, config: ProducerConfig) -> Result<Arc<dyn Producer>, EventLogError> {
        let inner: FutureProducer = properties::producer(&self.config.bootstrap_servers, &config)
            .create()
            .map_err(|e| event_log_error("create producer", "", &e))?;
        Ok(Arc::new(KafkaProducer {
            inner,
            queue_timeout: self.config.producer_queue_timeout,
        }))
    }

    async fn consumer(
        &self,
        config: ConsumerConfig,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, EventLogError> {
        let joined = topics.join(",");
        let inner: StreamConsumer = properties::consumer(&self.config.bootstrap_servers, &config)
            .create()
            .map_err(|e| event_log_error("create consumer", &joined, &e))?;
        inner
            .subscribe(topics)
            .map_err(|e| event_log_error("subscribe", &joined, &e))?;
        Ok(Box::new(KafkaConsumer {
            inner: Some(Arc::new(inner)),
            topics: joined,
            records_per_poll_max: self.config.records_per_poll_max,
            commit_timeout: self.config.commit_timeout,
            deferred_error: None,
            watermarks: Arc::clone(&self.admin),
        }))
    }
}
