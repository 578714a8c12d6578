//! The broker-fault conformance suite (`conformance::broker_faults`) against the
//! Kafka model: broker nodes killed and restarted through madsim, cluster state read from
//! the controller's disk, follower-fetch evidence from [`sim::kafka::BrokerCounters`]. The
//! same scenarios run against the real cluster in `services/adapters/tests/broker_faults`.
//!
//! Each test starts a fresh model with one topic per partition count the suite asks for
//! (the model creates no topics at run time) and runs its scenario on a client node in MSK.
//! Replay a failing run with the seed it prints: `MADSIM_TEST_SEED=<seed> ci/sim <test>`.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use anyhow::{anyhow, Context as _};
use async_trait::async_trait;
use conformance::broker_faults::{
    self as suite, BrokerFaults, BrokerId, BrokerInfo, ClusterView, FetchesServed, MortalConsumer,
    PartitionView,
};
use madsim::net::NetSim;
use madsim::{
    runtime::{Handle, NodeHandle},
    task::NodeId,
    time::{self, Instant},
};
use platform::{
    ports::{
        Acks, ConsumedRecord, Consumer, ConsumerConfig, EventLog, EventLogError, PartitionLag,
    },
    store::{kv::KvSchema, MemoryStore},
};
use sim::kafka::{KafkaCluster, KafkaModelConfig, TopicSpec};

/// The topics every test's model starts with: one per partition count the suite asks for.
const TOPIC_POOL: [(&str, i32); 3] = [("bf-p1", 1), ("bf-p3", 3), ("bf-p6", 6)];

/// The topic [`BrokerFaults::fresh_lossy_topic`] hands out: one partition, its own
/// `min.insync.replicas=1` and unclean election.
const LOSSY_TOPIC: &str = "bf-lossy";

/// Bound on a restarted broker being unfenced, and on a rack reader's read.
const MODEL_DEADLINE: Duration = Duration::from_secs(60);

/// Poll interval of the adapter's deadline loops (virtual time).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The Kafka model as [`BrokerFaults`] sees it.
struct ModelFaults {
    cluster: KafkaCluster,
    log: Arc<dyn EventLog>,
    /// Brokers killed and not restarted yet.
    killed: Mutex<BTreeSet<BrokerId>>,
    /// Brokers paused (their node's links clogged) and not resumed yet.
    paused: Mutex<BTreeSet<BrokerId>>,
    /// Topics of [`TOPIC_POOL`] already given to a scenario.
    handed_out: Mutex<BTreeSet<String>>,
    /// Client nodes made so far (mortal consumers, rack readers), for distinct names and ips.
    nodes_made: AtomicU8,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ModelFaults {
    fn start(test: &str) -> Arc<ModelFaults> {
        let seed = Handle::current().seed();
        println!("{test}: seed {seed}; replay with MADSIM_TEST_SEED={seed} ci/sim {test}");
        let config = KafkaModelConfig::seed_default().with_topics(
            TOPIC_POOL
                .iter()
                .map(|(name, partitions)| TopicSpec::new(*name, *partitions))
                .chain([TopicSpec {
                    min_insync_replicas: Some(1),
                    unclean_leader_election: Some(true),
                    ..TopicSpec::new(LOSSY_TOPIC, 1)
                }])
                .collect(),
        );
        let cluster = KafkaCluster::start(config);
        let log = cluster.event_log();
        Arc::new(ModelFaults {
            cluster,
            log,
            killed: Mutex::default(),
            paused: Mutex::default(),
            handed_out: Mutex::default(),
            nodes_made: AtomicU8::new(0),
            started: Instant::now(),
        })
    }

    fn node_of(&self, broker: BrokerId) -> anyhow::Result<NodeId> {
        let name = &self
            .cluster
            .config()
            .broker(broker)
            .ok_or_else(|| anyhow!("no broker {broker} in the model"))?
            .name;
        Ok(self
            .cluster
            .broker_node(name)
            .ok_or_else(|| anyhow!("no node for broker {name}"))?
            .id)
    }

    /// A new client node in `region` (`msk` / `nsk`).
    fn client_node(&self, what: &str, region: &str) -> NodeHandle {
        let n = self.nodes_made.fetch_add(1, Ordering::SeqCst) + 1;
        let ip = match region {
            "nsk" => Ipv4Addr::new(10, 2, 7, n),
            _ => Ipv4Addr::new(10, 1, 7, n),
        };
        Handle::current()
            .create_node()
            .name(format!("{what}-{n}"))
            .ip(IpAddr::V4(ip))
            .build()
    }

    fn counters(&self) -> BTreeMap<BrokerId, (u64, u64)> {
        self.cluster
            .config()
            .brokers
            .iter()
            .filter_map(|b| {
                let c = self.cluster.broker_counters(&b.name)?;
                Some((
                    b.id,
                    (c.consumer_fetches(), c.consumer_fetches_as_follower()),
                ))
            })
            .collect()
    }
}

#[async_trait]
impl BrokerFaults for ModelFaults {
    fn brokers(&self) -> Vec<BrokerInfo> {
        self.cluster
            .config()
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    async fn kill_broker(&self, broker: BrokerId) -> anyhow::Result<()> {
        let node = self.node_of(broker)?;
        lock(&self.killed).insert(broker);
        Handle::current().kill(node);
        Ok(())
    }

    async fn pause_broker(&self, broker: BrokerId) -> anyhow::Result<()> {
        let node = self.node_of(broker)?;
        lock(&self.paused).insert(broker);
        NetSim::current().clog_node(node);
        Ok(())
    }

    async fn resume_broker(&self, broker: BrokerId) -> anyhow::Result<()> {
        let node = self.node_of(broker)?;
        lock(&self.paused).remove(&broker);
        NetSim::current().unclog_node(node);
        Ok(())
    }

    async fn restart_killed_brokers(&self) -> anyhow::Result<()> {
        let paused = std::mem::take(&mut *lock(&self.paused));
        for broker in paused {
            NetSim::current().unclog_node(self.node_of(broker)?);
        }
        let killed = std::mem::take(&mut *lock(&self.killed));
        for broker in &killed {
            Handle::current().restart(self.node_of(*broker)?);
        }
        let deadline = Instant::now() + MODEL_DEADLINE;
        while self
            .cluster
            .fenced_brokers()
            .iter()
            .any(|b| killed.contains(b))
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "brokers {killed:?} still fenced {MODEL_DEADLINE:?} after their restart"
            );
            time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }

    async fn cluster_view(&self, topic: Option<&str>) -> Option<ClusterView> {
        let (fenced, killed) = (self.cluster.fenced_brokers(), lock(&self.killed).clone());
        let alive = self
            .cluster
            .config()
            .brokers
            .iter()
            .map(|b| b.id)
            .filter(|b| !fenced.contains(b) && !killed.contains(b))
            .collect();
        let partitions = self
            .cluster
            .partition_states()
            .into_iter()
            .filter(|(tp, _)| topic.is_none_or(|t| tp.topic == t))
            .map(|(tp, s)| PartitionView {
                topic: tp.topic,
                partition: tp.partition,
                leader: s.leader,
                replicas: s.replicas,
                isr: s.isr.into_iter().collect(),
            })
            .collect();
        Some(ClusterView { alive, partitions })
    }

    async fn high_watermarks(&self, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
        Ok(self
            .cluster
            .log_snapshot(topic)
            .iter()
            .enumerate()
            .map(|(p, records)| (p as i32, records.len() as i64))
            .collect())
    }

    async fn fresh_topic(&self, _prefix: &str, partitions: i32) -> anyhow::Result<String> {
        let mut handed_out = lock(&self.handed_out);
        let (name, _) = TOPIC_POOL
            .iter()
            .find(|(name, p)| *p == partitions && !handed_out.contains(*name))
            .with_context(|| {
                format!(
                    "the model creates no topics at run time: add a second topic with \
                     {partitions} partitions to TOPIC_POOL"
                )
            })?;
        handed_out.insert((*name).to_owned());
        Ok((*name).to_owned())
    }

    async fn fresh_lossy_topic(&self, _prefix: &str) -> anyhow::Result<String> {
        let mut handed_out = lock(&self.handed_out);
        anyhow::ensure!(
            handed_out.insert(LOSSY_TOPIC.to_owned()),
            "the model has one lossy topic, {LOSSY_TOPIC}, already handed out"
        );
        Ok(LOSSY_TOPIC.to_owned())
    }

    async fn group_coordinated_by(
        &self,
        prefix: &str,
        _broker: BrokerId,
    ) -> anyhow::Result<String> {
        Ok(suite::unique(prefix))
    }

    async fn mortal_consumer(
        &self,
        config: ConsumerConfig,
        topic: &str,
    ) -> Result<Box<dyn MortalConsumer>, EventLogError> {
        // The consumer's membership task (heartbeats, rejoins) runs on the node it is made
        // on: killing that node kills the member without a LeaveGroup.
        let node = self.client_node("mortal-consumer", "msk");
        let (log, topic) = (self.log.clone(), topic.to_owned());
        let consumer = node
            .spawn(async move { log.consumer(config, &[topic.as_str()]).await })
            .await
            .map_err(|e| EventLogError::Fatal(format!("consumer node: {e}")))??;
        Ok(Box::new(NodeConsumer {
            inner: Some(consumer),
            node: node.id(),
        }))
    }

    async fn fetches_served(
        &self,
        topic: &str,
        client_rack: &str,
        until: &BTreeMap<i32, i64>,
    ) -> anyhow::Result<BTreeMap<BrokerId, FetchesServed>> {
        let before = self.counters();
        let node = self.client_node("rack-reader", client_rack);
        let config = ConsumerConfig {
            client_rack: Some(client_rack.to_owned()),
            ..ConsumerConfig::new(suite::unique("bf_rack_counters"))
        };
        let (log, topic, until) = (self.log.clone(), topic.to_owned(), until.clone());
        node.spawn(async move {
            let mut consumer = log
                .consumer(config, &[topic.as_str()])
                .await
                .context("a rack reader")?;
            let deadline = Instant::now() + MODEL_DEADLINE;
            let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
            while until
                .iter()
                .any(|(p, t)| reached.get(p).is_none_or(|r| r < t))
            {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the rack reader reached {reached:?} of {until:?} in {MODEL_DEADLINE:?}"
                );
                let records: Vec<ConsumedRecord> = consumer
                    .poll(Duration::from_millis(500))
                    .await
                    .unwrap_or_default();
                for r in records {
                    let at = reached.entry(r.partition).or_insert(r.offset);
                    *at = (*at).max(r.offset);
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| anyhow!("rack reader node: {e}"))??;
        let after = self.counters();
        Ok(after
            .into_iter()
            .map(|(b, (all, as_follower))| {
                let (all_before, follower_before) = before.get(&b).copied().unwrap_or_default();
                let as_follower = as_follower - follower_before;
                let served = FetchesServed {
                    as_leader: (all - all_before) - as_follower,
                    as_follower,
                };
                (b, served)
            })
            .collect())
    }

    fn step(&self, what: &str) {
        println!(
            "[broker_faults] {:>7.2}s {what}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// A model consumer whose group membership lives on a node of its own.
struct NodeConsumer {
    /// `None` once dead.
    inner: Option<Box<dyn Consumer>>,
    node: NodeId,
}

impl NodeConsumer {
    fn inner(&mut self) -> Result<&mut Box<dyn Consumer>, EventLogError> {
        self.inner
            .as_mut()
            .ok_or_else(|| EventLogError::Fatal("the consumer is dead".into()))
    }
}

#[async_trait]
impl Consumer for NodeConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, EventLogError> {
        self.inner()?.poll(timeout).await
    }

    async fn commit(&mut self, records: &[ConsumedRecord]) -> Result<(), EventLogError> {
        self.inner()?.commit(records).await
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError> {
        self.inner()?.lag().await
    }
}

#[async_trait]
impl MortalConsumer for NodeConsumer {
    async fn die(&mut self) {
        // The node first: dropping the consumer while its membership task lives would leave
        // the group politely.
        Handle::current().kill(self.node);
        self.inner = None;
    }
}

/// Runs `scenario` on a fresh client node in MSK (every model is reached over the simulated
/// network from there), then checks what only the model can see from inside: no
/// acknowledged write missing from the log (except on the lossy topic, made to lose them),
/// and no in-sync replica differing from its leader below the high watermark.
async fn on_client<F: Future<Output = ()> + Send + 'static>(faults: &ModelFaults, scenario: F) {
    faults
        .client_node("scenario", "msk")
        .spawn(scenario)
        .await
        .expect("the scenario ran to the end");
    let lost: Vec<_> = faults
        .cluster
        .lost_acknowledged_writes(Acks::All)
        .into_iter()
        .filter(|w| w.topic != LOSSY_TOPIC)
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    for topic in lock(&faults.handed_out).iter() {
        assert_eq!(
            faults.cluster.replica_divergence(topic),
            Vec::<String>::new()
        );
    }
}

#[madsim::test]
async fn acknowledged_writes_survive_the_loss_of_any_one_broker() {
    let faults = ModelFaults::start("acknowledged_writes_survive_the_loss_of_any_one_broker");
    let f = faults.clone();
    on_client(&faults, async move {
        suite::acknowledged_writes_survive_the_loss_of_any_one_broker(f.log.clone(), &*f).await;
    })
    .await;
}

#[madsim::test]
async fn a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back() {
    let faults = ModelFaults::start(
        "a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back",
    );
    let f = faults.clone();
    on_client(&faults, async move {
        suite::a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies() {
    let faults = ModelFaults::start(
        "a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies",
    );
    let f = faults.clone();
    on_client(&faults, async move {
        suite::a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken() {
    let faults = ModelFaults::start(
        "after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken",
    );
    let f = faults.clone();
    on_client(&faults, async move {
        suite::after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn a_restarted_broker_leads_the_partitions_it_is_preferred_for_again() {
    let faults =
        ModelFaults::start("a_restarted_broker_leads_the_partitions_it_is_preferred_for_again");
    let f = faults.clone();
    on_client(&faults, async move {
        suite::a_restarted_broker_leads_the_partitions_it_is_preferred_for_again(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal() {
    let faults = ModelFaults::start(
        "with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal",
    );
    let f = faults.clone();
    on_client(&faults, async move {
        let refusals =
            suite::with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal(
                f.log.clone(),
                &*f,
                Arc::new(MemoryStore::<KvSchema>::default()),
            )
            .await;
        println!("[broker_faults] refusals below min ISR: {refusals:?}");
        assert_eq!(
            refusals.producer,
            EventLogError::NotEnoughReplicas,
            "the model's producer reports the leader's NOT_ENOUGH_REPLICAS itself"
        );
    })
    .await;
}

#[madsim::test]
async fn a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped() {
    let faults =
        ModelFaults::start("a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped");
    let f = faults.clone();
    on_client(&faults, async move {
        suite::a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll() {
    let faults = ModelFaults::start(
        "a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll",
    );
    let f = faults.clone();
    on_client(&faults, async move {
        suite::a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill() {
    let faults =
        ModelFaults::start("idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill");
    let f = faults.clone();
    on_client(&faults, async move {
        suite::idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill(
            f.log.clone(),
            &*f,
        )
        .await;
    })
    .await;
}

#[madsim::test]
async fn a_consumer_is_served_by_a_broker_in_its_own_rack() {
    let faults = ModelFaults::start("a_consumer_is_served_by_a_broker_in_its_own_rack");
    let f = faults.clone();
    on_client(&faults, async move {
        suite::a_consumer_is_served_by_a_broker_in_its_own_rack(f.log.clone(), &*f).await;
    })
    .await;
}
