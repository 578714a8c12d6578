//! The model's configuration: the seed's cluster (two brokers in MSK, one in NSK, a controller
//! in MSK), its topics, and every timing limit of the model, named with its unit last.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use super::protocol::BrokerId;

/// One broker of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSpec {
    /// Kafka `broker.id` / `node.id`.
    pub id: BrokerId,
    /// The simulated node's name (`msk-1`).
    pub name: String,
    pub ip: IpAddr,
    /// Kafka `broker.rack` (`msk` / `nsk`).
    pub rack: String,
}

/// One topic of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Replicas per partition; at most the number of brokers.
    pub replication_factor: usize,
    /// The topic's own `min.insync.replicas` (a topic config), instead of the cluster's.
    pub min_insync_replicas: Option<usize>,
    /// The topic's own `unclean.leader.election.enable`, instead of the cluster's.
    pub unclean_leader_election: Option<bool>,
}

impl TopicSpec {
    /// A topic with `partitions` partitions and the seed's replication factor 3.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: 3,
            min_insync_replicas: None,
            unclean_leader_election: None,
        }
    }
}

/// Everything the model needs to start. Plain data: a scenario can print and override it.
#[derive(Clone, Debug)]
pub struct KafkaModelConfig {
    pub brokers: Vec<BrokerSpec>,
    /// The port every broker listens on.
    pub broker_port: u16,
    /// The controller node's name (it also hosts the group coordinator).
    pub controller_name: String,
    pub controller_ip: IpAddr,
    pub controller_rack: String,
    pub controller_port: u16,
    pub topics: Vec<TopicSpec>,
    /// Kafka `min.insync.replicas`: `acks=all` writes are refused below it.
    pub min_insync_replicas: usize,
    /// Kafka `unclean.leader.election.enable`: elect an out-of-sync replica rather than
    /// leave a partition offline (loses acknowledged writes).
    pub unclean_leader_election: bool,
    /// Kafka `broker.heartbeat.interval.ms`; brokers also learn metadata from the reply.
    pub broker_heartbeat_interval_ms: u64,
    /// Kafka `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// Kafka `replica.fetch.wait.max.ms`: how long a leader holds an empty follower fetch.
    pub replica_fetch_wait_max_ms: u64,
    /// Records returned per partition in one follower fetch.
    pub replica_fetch_records_max: usize,
    /// Bound on one follower fetch round trip beyond the wait above.
    pub replica_fetch_timeout_ms: u64,
    /// Kafka `replica.fetch.backoff.ms`: pause after a failed follower fetch.
    pub replica_fetch_backoff_ms: u64,
    /// Kafka `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// How often a leader checks its followers for ISR shrink/expand.
    pub isr_check_interval_ms: u64,
    /// How often the controller checks broker sessions and group member sessions.
    pub controller_tick_interval_ms: u64,
    /// Bound on one broker→controller request.
    pub controller_request_timeout_ms: u64,
    /// Bound on one client metadata / coordinator request.
    pub client_request_timeout_ms: u64,
    /// Kafka `fetch.max.wait.ms`: how long a leader holds an empty consumer fetch.
    pub fetch_wait_max_ms: u64,
    /// Records returned per partition in one consumer fetch (`max.poll.records`-like).
    pub fetch_records_max: usize,
    /// Kafka `retry.backoff.ms`: first pause between producer retries.
    pub retry_backoff_ms: u64,
    /// Kafka `retry.backoff.max.ms`: longest pause between producer retries.
    pub retry_backoff_max_ms: u64,
    /// One-way delay of every model message between an MSK node (10.1.0.0/16) and an NSK
    /// node (10.2.0.0/16): client↔broker, broker↔broker, broker↔controller. 0 turns it off.
    pub cross_region_latency_ms: u64,
    /// Kafka `metadata.max.age.ms`, as far as follower fetching uses it: how long a consumer
    /// reads from the follower its leader picked before asking the leader again, and how long
    /// it reads from the leader after that follower failed it. (Kafka's default is 5 min.)
    pub metadata_max_age_ms: u64,
    /// How often the brokers' hosts write dirty pages back to disk (Linux wakes its flusher
    /// every 5 s, `vm.dirty_writeback_centisecs = 500`). A power loss drops what was written
    /// since the last writeback. The model writes every dirty page at each wakeup; Linux
    /// writes only pages dirty for 30 s (`vm.dirty_expire_centisecs`), so it loses more.
    pub page_cache_writeback_interval_ms: u64,
    /// Kafka `leader.imbalance.check.interval.seconds` (in ms): how often the controller moves
    /// leadership back to preferred replicas (`auto.leader.rebalance.enable`, on by default).
    /// 0 turns the rebalance off.
    pub leader_imbalance_check_interval_ms: u64,
    /// Kafka `leader.imbalance.per.broker.percentage`: a broker's partitions are given back to
    /// it once more than this share of those it is preferred for are led by others.
    pub leader_imbalance_per_broker_percentage: u32,
}

impl KafkaModelConfig {
    /// The seed's cluster: msk-1 (10.1.1.1), msk-2 (10.1.1.2) in rack `msk`, nsk-1 (10.2.1.1)
    /// in rack `nsk`, port 9092; the controller `kafka-controller` at 10.1.1.10:9093 in MSK;
    /// the seed's topics with replication factor 3; the cluster settings of
    /// `kafka-cluster.properties` (`min.insync.replicas`, unclean election, broker liveness,
    /// ISR lag, leader rebalance), the values the local cluster runs with; 25 ms one way
    /// between the regions.
    pub fn seed_default() -> Self {
        let settings = ClusterSettings::shared();
        let broker = |id, name: &str, ip: [u8; 4], rack: &str| BrokerSpec {
            id,
            name: name.into(),
            ip: IpAddr::V4(Ipv4Addr::from(ip)),
            rack: rack.into(),
        };
        KafkaModelConfig {
            brokers: vec![
                broker(1, "msk-1", [10, 1, 1, 1], "msk"),
                broker(2, "msk-2", [10, 1, 1, 2], "msk"),
                broker(3, "nsk-1", [10, 2, 1, 1], "nsk"),
            ],
            broker_port: 9092,
            controller_name: "kafka-controller".into(),
            controller_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 1, 10)),
            controller_rack: "msk".into(),
            controller_port: 9093,
            topics: platform::topics::all()
                .into_iter()
                .map(|t| TopicSpec::new(&t.name, t.partitions))
                .collect(),
            min_insync_replicas: settings.number("min.insync.replicas") as usize,
            unclean_leader_election: settings.flag("unclean.leader.election.enable"),
            broker_heartbeat_interval_ms: settings.millis("broker.heartbeat.interval.ms"),
            broker_session_timeout_ms: settings.millis("broker.session.timeout.ms"),
            replica_fetch_wait_max_ms: 500,
            replica_fetch_records_max: 1_000,
            replica_fetch_timeout_ms: 1_000,
            replica_fetch_backoff_ms: 100,
            replica_lag_time_max_ms: settings.millis("replica.lag.time.max.ms"),
            isr_check_interval_ms: 250,
            controller_tick_interval_ms: 100,
            controller_request_timeout_ms: 1_000,
            client_request_timeout_ms: 1_000,
            fetch_wait_max_ms: 500,
            fetch_records_max: 500,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1_000,
            cross_region_latency_ms: 25,
            metadata_max_age_ms: 5_000,
            page_cache_writeback_interval_ms: 5_000,
            leader_imbalance_check_interval_ms: if settings.flag("auto.leader.rebalance.enable") {
                settings.millis_of_seconds("leader.imbalance.check.interval.seconds")
            } else {
                0
            },
            leader_imbalance_per_broker_percentage: settings
                .number("leader.imbalance.per.broker.percentage")
                as u32,
        }
    }

    /// The seed's cluster with `topics` instead of the seed's topics.
    pub fn with_topics(mut self, topics: Vec<TopicSpec>) -> Self {
        self.topics = topics;
        self
    }

    /// `min.insync.replicas` of `topic`: its own, else the cluster's.
    pub fn min_insync_replicas_of(&self, topic: &str) -> usize {
        self.topic(topic)
            .and_then(|t| t.min_insync_replicas)
            .unwrap_or(self.min_insync_replicas)
    }

    /// `unclean.leader.election.enable` of `topic`: its own, else the cluster's.
    pub fn unclean_leader_election_of(&self, topic: &str) -> bool {
        self.topic(topic)
            .and_then(|t| t.unclean_leader_election)
            .unwrap_or(self.unclean_leader_election)
    }

    fn topic(&self, topic: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == topic)
    }

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerSpec> {
        self.brokers.iter().find(|b| b.id == id)
    }

    pub fn broker_addr(&self, id: BrokerId) -> Option<SocketAddr> {
        self.broker(id)
            .map(|b| SocketAddr::new(b.ip, self.broker_port))
    }

    pub fn controller_addr(&self) -> SocketAddr {
        SocketAddr::new(self.controller_ip, self.controller_port)
    }

    /// Brokers ordered with racks alternating (`msk-1, nsk-1, msk-2`), as Kafka's rack-aware
    /// replica assignment orders them.
    pub(crate) fn rack_alternating_brokers(&self) -> Vec<BrokerId> {
        let mut racks: std::collections::BTreeMap<&str, Vec<BrokerId>> = Default::default();
        for b in &self.brokers {
            racks.entry(b.rack.as_str()).or_default().push(b.id);
        }
        let mut out = Vec::with_capacity(self.brokers.len());
        for i in 0..self.brokers.len() {
            for ids in racks.values() {
                if let Some(id) = ids.get(i) {
                    out.push(*id);
                }
            }
        }
        out
    }

    pub(crate) fn broker_heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.broker_heartbeat_interval_ms)
    }
    pub(crate) fn broker_session_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_session_timeout_ms)
    }
    pub(crate) fn replica_fetch_wait_max(&self) -> Duration {
        Duration::from_millis(self.replica_fetch_wait_max_ms)
    }
    pub(crate) fn replica_fetch_timeout(&self) -> Duration {
        Duration::from_millis(self.replica_fetch_timeout_ms)
    }
    pub(crate) fn replica_fetch_backoff(&self) -> Duration {
        Duration::from_millis(self.replica_fetch_backoff_ms)
    }
    pub(crate) fn replica_lag_time_max(&self) -> Duration {
        Duration::from_millis(self.replica_lag_time_max_ms)
    }
    pub(crate) fn isr_check_interval(&self) -> Duration {
        Duration::from_millis(self.isr_check_interval_ms)
    }
    pub(crate) fn controller_tick_interval(&self) -> Duration {
        Duration::from_millis(self.controller_tick_interval_ms)
    }
    pub(crate) fn controller_request_timeout(&self) -> Duration {
        Duration::from_millis(self.controller_request_timeout_ms)
    }
    pub(crate) fn client_request_timeout(&self) -> Duration {
        Duration::from_millis(self.client_request_timeout_ms)
    }
    pub(crate) fn fetch_wait_max(&self) -> Duration {
        Duration::from_millis(self.fetch_wait_max_ms)
    }
    pub(crate) fn cross_region_latency(&self) -> Duration {
        Duration::from_millis(self.cross_region_latency_ms)
    }
    pub(crate) fn page_cache_writeback_interval(&self) -> Duration {
        Duration::from_millis(self.page_cache_writeback_interval_ms.max(1))
    }
    pub(crate) fn metadata_max_age(&self) -> Duration {
        Duration::from_millis(self.metadata_max_age_ms)
    }
}

impl Default for KafkaModelConfig {
    fn default() -> Self {
        Self::seed_default()
    }
}

/// The cluster settings the local Kafka cluster runs with (`ci/infra/kafka.sh` writes them
/// into every node's properties), read by the model too.
const CLUSTER_SETTINGS: &str = include_str!("../../../kafka-cluster.properties");

/// `kafka-cluster.properties`, parsed.
struct ClusterSettings(Vec<(&'static str, &'static str)>);

impl ClusterSettings {
    fn shared() -> Self {
        Self::parse(CLUSTER_SETTINGS)
    }

    fn parse(text: &'static str) -> Self {
        ClusterSettings(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect(),
        )
    }

    fn value(&self, key: &str) -> &'static str {
        match self.0.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => v,
            None => panic!("kafka-cluster.properties has no {key}"),
        }
    }

    fn number(&self, key: &str) -> u64 {
        let v = self.value(key);
        v.parse()
            .unwrap_or_else(|_| panic!("kafka-cluster.properties: {key}={v} is not a number"))
    }

    fn flag(&self, key: &str) -> bool {
        match self.value(key) {
            "true" => true,
            "false" => false,
            v => panic!("kafka-cluster.properties: {key}={v} is neither true nor false"),
        }
    }

    /// A setting in milliseconds.
    fn millis(&self, key: &str) -> u64 {
        self.number(key)
    }

    /// A setting in seconds, in milliseconds.
    fn millis_of_seconds(&self, key: &str) -> u64 {
        self.number(key) * 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_runs_the_clusters_settings() {
        let c = KafkaModelConfig::seed_default();
        let s = ClusterSettings::shared();
        assert_eq!(
            c.min_insync_replicas as u64,
            s.number("min.insync.replicas")
        );
        assert_eq!(
            c.broker_session_timeout_ms,
            s.number("broker.session.timeout.ms")
        );
        assert_eq!(
            c.broker_heartbeat_interval_ms,
            s.number("broker.heartbeat.interval.ms")
        );
        assert_eq!(
            c.replica_lag_time_max_ms,
            s.number("replica.lag.time.max.ms")
        );
        assert_eq!(
            c.leader_imbalance_check_interval_ms,
            s.number("leader.imbalance.check.interval.seconds") * 1_000
        );
        assert!(c.broker_heartbeat_interval_ms < c.broker_session_timeout_ms / 2);
    }

    #[test]
    #[should_panic(expected = "no broker.session.timeout.ms")]
    fn a_missing_setting_is_named() {
        ClusterSettings::parse("min.insync.replicas=2\n").number("broker.session.timeout.ms");
    }
}
