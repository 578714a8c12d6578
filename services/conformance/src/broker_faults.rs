//! The broker-fault conformance suite: the guarantees of the seed's Kafka setup (RF 3,
//! `min.insync.replicas=2`, `acks=all`, idempotent producers, manual commits, rack-aware
//! follower fetching) under broker crashes, written once and run against every cluster that
//! can be crashed: the real 3-broker Apache Kafka cluster (`services/adapters/tests/broker_faults`,
//! brokers SIGKILLed through `ci/infra/kafka.sh`) and the simulation's Kafka model
//! (`sim/tests/sim/broker_faults.rs`, broker nodes killed through madsim).
//!
//! A scenario talks to the cluster through the [`EventLog`] port, like service logic, and
//! injects faults and reads cluster state through [`BrokerFaults`], which each world
//! implements. Each scenario is a public async function that panics, saying what was
//! expected, on the first violation; it starts on a healthy cluster (every broker alive,
//! every in-sync replica set full), makes its own topics ([`BrokerFaults::fresh_topic`]) and
//! consumer groups, and restarts every broker it killed before it returns (it waits for full
//! ISRs only where it needs them; the caller waits before the next scenario). Nothing here
//! sleeps to wait for something: conditions are polled with a deadline, and in the
//! simulation every deadline is virtual time.
//!
//! The scenarios, and what makes each fail:
//! - [`acknowledged_writes_survive_the_loss_of_any_one_broker`] — an acknowledged record
//!   missing or changed after its leader (then a follower in the other rack) dies: lost
//!   replication, an out-of-sync leader elected, a restart that loses the log; also sends
//!   refused with one broker down (e.g. replication factor below 3).
//! - [`with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal`] —
//!   a write acknowledged with one in-sync replica (`min.insync.replicas=1`), a refusal that is
//!   not retriable or not the leader's `NOT_ENOUGH_REPLICAS`, an outbox that drops or never
//!   drains events, a producer duplicate of one relay send.
//! - [`a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back`] —
//!   a high watermark that advances while the ISR is under `min.insync.replicas` (Kafka 3.7+
//!   freezes it), so a record only the leader holds becomes visible; or one that never
//!   advances once the ISR is back.
//! - [`a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies`] — a
//!   partition left offline (or led by a replica that missed a committed record) when its
//!   last in-sync replica dies, although a follower that left the ISR while it was under
//!   `min.insync.replicas` holds every committed record (Kafka 4.x's eligible leader
//!   replicas, KIP-966).
//! - [`after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken`]
//!   — a consumer that skips the records a new leader wrote at offsets it had read from the
//!   old one (no KIP-320 position validation), or an idempotent producer that goes on after
//!   the leader lost records it had acknowledged (librdkafka makes that fatal).
//! - [`a_restarted_broker_leads_the_partitions_it_is_preferred_for_again`] — leadership that
//!   stays with the replica that took over after the preferred leader returned (no
//!   `auto.leader.rebalance.enable`), or writes lost across the move back.
//! - [`a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped`] — a dead member's
//!   partitions never reassigned, or resumed past its uncommitted batch (commits before the
//!   effect, auto-commit at poll time, offsets lost).
//! - [`idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill`] — a retried batch
//!   written twice (idempotence off or no dedup on the new leader), a key's records out of send
//!   order, an acknowledged offset holding another record.
//! - [`a_consumer_is_served_by_a_broker_in_its_own_rack`] — a broker of another rack serving a
//!   consumer's fetches (no follower fetching, or a selector that ignores racks).
//!
//! Per-key order on a healthy cluster is [`super::event_log`]'s
//! `records_with_one_key_are_read_in_send_order`, which both worlds run as it is.
//!
//! One deliberate difference between the worlds is part of the contract: below
//! `min.insync.replicas` the model's producer reports `NotEnoughReplicas`, while the rdkafka
//! adapter reports `Timeout`, because librdkafka retries `NOT_ENOUGH_REPLICAS` until
//! `delivery.timeout.ms`. The suite accepts either, but a `Timeout` only together with the
//! leader's own `NOT_ENOUGH_REPLICAS` answer to a send without client retries
//! ([`BrokerFaults::single_attempt_send`]), and it reports which one it saw ([`Refusals`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use platform::{
    ids,
    outbox::{run_relay, OutboxSignal, RelayConfig, EVENT_ID_HEADER, SEND_ID_HEADER},
    ports::{
        Acks, ConsumedRecord, Consumer, ConsumerConfig, EventLog, EventLogError, OutboxMessage,
        ProducedRecord, Producer, ProducerConfig, RecordAck, Store, Tx,
    },
    store::kv::{KvSchema, KvTx},
    Shutdown,
};

/// Kafka's `broker.id` / `node.id`.
pub type BrokerId = i32;

/// One broker of the cluster under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: BrokerId,
    /// Kafka `broker.rack` (`msk` / `nsk`).
    pub rack: String,
}

/// One partition as the cluster's metadata reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    /// `None` while the partition is offline.
    pub leader: Option<BrokerId>,
    /// Assigned replicas, the preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas, the leader included.
    pub isr: Vec<BrokerId>,
}

impl PartitionView {
    /// Led, with every replica in sync.
    pub fn is_full(&self) -> bool {
        self.leader.is_some() && self.isr.len() == self.replicas.len()
    }
}

/// Alive brokers and partition states, from one metadata read.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// Brokers registered with the cluster and not fenced.
    pub alive: BTreeSet<BrokerId>,
    pub partitions: Vec<PartitionView>,
}

impl ClusterView {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionView> {
        self.partitions
            .iter()
            .find(|p| p.topic == topic && p.partition == partition)
    }

    /// The partitions of `topic`, by number.
    pub fn topic(&self, topic: &str) -> Vec<&PartitionView> {
        let mut ps: Vec<_> = self
            .partitions
            .iter()
            .filter(|p| p.topic == topic)
            .collect();
        ps.sort_by_key(|p| p.partition);
        ps
    }
}

/// Consumer fetches one broker served to one consumer, in the adapter's unit (the model
/// counts fetch responses that carried records; the real cluster's evidence, librdkafka's
/// statistics, names the broker each partition is fetched from, so it counts partitions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchesServed {
    /// Served as the partition's leader.
    pub as_leader: u64,
    /// Served as a follower (KIP-392 follower fetching).
    pub as_follower: u64,
}

/// A group member that can die the way a crashed process does: without leaving its group,
/// so the coordinator notices only when its session times out.
#[async_trait]
pub trait MortalConsumer: Consumer {
    /// Kills the member (no `LeaveGroup`, no commit). Later calls fail.
    async fn die(&mut self);
}

/// Fault injection and introspection of a cluster with the seed's topology (two brokers in
/// rack msk, one in rack nsk). Methods panic or return an error only when the adapter itself
/// fails (a broker that will not start); what the cluster does is for the scenarios to judge.
#[async_trait]
pub trait BrokerFaults: Send + Sync {
    /// Every broker of the cluster, whether alive or not.
    fn brokers(&self) -> Vec<BrokerInfo>;

    /// Crashes broker `broker` (no controlled shutdown, no flush of anything unsynced) and
    /// returns once it no longer serves anyone.
    async fn kill_broker(&self, broker: BrokerId) -> anyhow::Result<()>;

    /// Restarts every broker killed so far, resumes every paused one, and returns once the
    /// cluster reports them alive (not necessarily back in every ISR: see
    /// [`wait_until_healthy`]).
    async fn restart_killed_brokers(&self) -> anyhow::Result<()>;

    /// Freezes broker `broker` (SIGSTOP on the real cluster; every link of its node clogged
    /// in the model): it neither answers nor heartbeats, so the controller fences it after
    /// the broker session, and it keeps its process, state and incarnation.
    async fn pause_broker(&self, broker: BrokerId) -> anyhow::Result<()>;

    /// Lets a paused broker go on (SIGCONT; links unclogged), with the same incarnation: no
    /// restart, so not an unclean shutdown.
    async fn resume_broker(&self, broker: BrokerId) -> anyhow::Result<()>;

    /// One metadata read: alive brokers and the partitions of `topic` (every topic if `None`);
    /// `None` when the read failed (no broker answered).
    async fn cluster_view(&self, topic: Option<&str>) -> Option<ClusterView>;

    /// The high watermark of every partition of `topic`.
    async fn high_watermarks(&self, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>>;

    /// An empty topic nobody else uses, with `partitions` partitions, replication factor 3,
    /// `min.insync.replicas=2`, every replica in sync. Its name starts with `prefix`.
    async fn fresh_topic(&self, prefix: &str, partitions: i32) -> anyhow::Result<String>;

    /// Like [`BrokerFaults::fresh_topic`] with one partition, but with
    /// `min.insync.replicas=1` and `unclean.leader.election.enable=true`: a leader alone in its
    /// ISR goes on committing, and an out-of-sync replica may lead — a topic that can lose
    /// records.
    async fn fresh_lossy_topic(&self, prefix: &str) -> anyhow::Result<String>;

    /// A new consumer group id, starting with `prefix`, whose coordinator is broker `broker`
    /// (Kafka's is the leader of the group's `__consumer_offsets` partition; the model's
    /// coordinator is on its controller node, so any id is fine there).
    async fn group_coordinated_by(&self, prefix: &str, broker: BrokerId) -> anyhow::Result<String>;

    /// A member of `config.group_id` subscribed to `topic` that can [`MortalConsumer::die`].
    async fn mortal_consumer(
        &self,
        config: ConsumerConfig,
        topic: &str,
    ) -> Result<Box<dyn MortalConsumer>, EventLogError>;

    /// Reads `topic` from its start as a new group member with `client.rack = client_rack`
    /// until it reached, on every partition of `until`, the offset given; returns which
    /// brokers served its fetches (brokers that served none may be left out).
    async fn fetches_served(
        &self,
        topic: &str,
        client_rack: &str,
        until: &BTreeMap<i32, i64>,
    ) -> anyhow::Result<BTreeMap<BrokerId, FetchesServed>>;

    /// The leader's own answer to one `acks=all` send without client-side retries, for an
    /// adapter whose producer hides it behind retries (librdkafka retries
    /// `NOT_ENOUGH_REPLICAS` until its delivery timeout, then says `Timeout`). `None`: the
    /// adapter's producer reports the leader's answer itself.
    async fn single_attempt_send(
        &self,
        _record: ProducedRecord,
    ) -> Option<Result<RecordAck, EventLogError>> {
        None
    }

    /// A step of a scenario, for the adapter to print with its clock.
    fn step(&self, what: &str) {
        tracing::info!("{what}");
    }
}

// ------------------------------------------------------------------------------ limits

/// Bound on a healthy cluster coming back: brokers alive and every ISR full again.
pub const HEAL_DEADLINE: Duration = Duration::from_secs(90);

/// Bound on reading records back through a consumer group, joining the group (and waiting
/// for a killed coordinator or leader to be replaced) included.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// Bound on the metadata showing the effect of a kill (a dead leader replaced, ISRs shrunk).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

/// Poll interval of the deadline loops.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Bound on one consumer poll.
const POLL_TIMEOUT: Duration = Duration::from_millis(300);

/// A producer that rides out a dead leader's fencing and the election after it (the real
/// cluster takes ~9 s).
const RIDE_OUT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A producer that gives up soon: the refusals below min ISR are what is tested.
const SHORT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Header carrying a record's payload, so a reader can tell records apart.
const SEQ_HEADER: &str = "seq";

// ------------------------------------------------------------------------------ durability

/// For the leader of partition 0 and then one of its followers in another rack (so both
/// racks lose a broker once): produce with `acks=all`, kill the broker, produce again (two
/// in-sync replicas are still enough), read everything acknowledged so far back through a new
/// group, restart the broker and wait for full ISRs. Every acknowledged record is read back
/// unchanged at its acknowledged position.
pub async fn acknowledged_writes_survive_the_loss_of_any_one_broker(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    const PARTITIONS: i32 = 3;
    const RECORDS_PER_PHASE: usize = 30;
    let topic = fresh_topic(faults, "bf-any-one", PARTITIONS).await;
    let p0 = wait_for_view(
        faults,
        "partition 0 has a leader",
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| v.partition(&topic, 0).is_some_and(|p| p.leader.is_some()),
    )
    .await
    .partition(&topic, 0)
    .cloned()
    .expect("partition 0");
    let leader = p0.leader.expect("a leader");
    let leader_rack = rack_of(faults, leader);
    let follower = p0
        .replicas
        .iter()
        .copied()
        .find(|r| *r != leader && rack_of(faults, *r) != leader_rack)
        .expect("a replica of partition 0 in another rack than its leader's");
    let victims = [leader, follower];
    faults.step(&format!(
        "partition 0: {p0:?}; victims in turn: {victims:?}"
    ));

    let producer = producer(&log, RIDE_OUT_DELIVERY_TIMEOUT, Duration::from_secs(5)).await;
    let mut sent = Vec::new();
    let mut acks: Vec<RecordAck> = Vec::new();
    for (round, victim) in victims.into_iter().enumerate() {
        let before: Vec<_> = (0..RECORDS_PER_PHASE)
            .map(|i| record(&topic, &format!("k{}", i % 7), &format!("r{round}-up-{i}")))
            .collect();
        acks.extend(send_all(producer.as_ref(), &before, "with every broker up").await);
        sent.extend(before);

        kill(faults, victim).await;
        let during: Vec<_> = (0..RECORDS_PER_PHASE)
            .map(|i| {
                record(
                    &topic,
                    &format!("k{}", i % 7),
                    &format!("r{round}-down-{i}"),
                )
            })
            .collect();
        let when = format!("with broker {victim} down (two replicas left)");
        acks.extend(send_all(producer.as_ref(), &during, &when).await);
        sent.extend(during);
        faults.step(&format!("{} records acknowledged so far", acks.len()));

        let read = read_until(
            log.as_ref(),
            ConsumerConfig::new(unique("bf_any_one")),
            &topic,
            &last_offsets(&acks),
            &format!("a new group with broker {victim} down"),
        )
        .await;
        assert_acked_were_read(&sent, &acks, &read, &when);
        faults.step(&format!(
            "read back all {} with broker {victim} down",
            acks.len()
        ));

        heal(faults).await;
        wait_until_healthy(faults, "the restarted broker is back in every ISR").await;
        faults.step("every ISR full again");
    }
}

// ------------------------------------------------------------------------------ refusal below min ISR, outbox

/// How the cluster refused writes below `min.insync.replicas`, as
/// [`with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal`]
/// saw it.
#[derive(Clone, Debug)]
pub struct Refusals {
    /// What the port's producer said to one send (`NotEnoughReplicas` or `Timeout`).
    pub producer: EventLogError,
    /// The leader's own answer to a send without client retries, where the adapter can show
    /// it ([`BrokerFaults::single_attempt_send`]).
    pub leader: Option<EventLogError>,
    /// The outbox relay's refused sends, by error variant.
    pub relay: BTreeMap<&'static str, usize>,
}

/// Kafka 3.7+ (`Partition.maybeIncrementLeaderHW`) does not advance a partition's high
/// watermark while its ISR is under `min.insync.replicas`. With both other brokers killed,
/// the leader alone takes an `acks=1` write (`acks=1` does not ask for the ISR); the high
/// watermark stays below it for a while (a fresh group could not read it), and passes it
/// once the restarted brokers are back in the ISR, when a fresh group reads both records.
pub async fn a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    /// How long the frozen watermark is watched (a negative observation needs a window).
    const FROZEN_WATCH: Duration = Duration::from_secs(3);
    let topic = fresh_topic(faults, "bf-frozen-hw", 1).await;
    let seed = producer(&log, HEAL_DEADLINE, Duration::from_secs(5)).await;
    let committed = seed
        .send(record(&topic, "k", "committed"))
        .await
        .expect("an acks=all write on a healthy cluster");
    let leader = leader_of(faults, &topic, 0).await;
    for b in faults
        .brokers()
        .iter()
        .map(|b| b.id)
        .filter(|b| *b != leader)
    {
        kill(faults, b).await;
    }
    wait_for_view(
        faults,
        &format!("{topic}/0 is led by broker {leader} alone in its ISR"),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            v.partition(&topic, 0)
                .is_some_and(|p| p.leader == Some(leader) && p.isr == [leader])
        },
    )
    .await;
    let hw = |hws: BTreeMap<i32, i64>| hws.get(&0).copied().unwrap_or(0);
    let frozen = hw(faults
        .high_watermarks(&topic)
        .await
        .unwrap_or_else(|e| panic!("high watermark of {topic}: {e:#}")));
    assert_eq!(
        frozen,
        committed.offset + 1,
        "the high watermark before the leader-only write"
    );

    let lone = log
        .producer(ProducerConfig {
            acks: Acks::Leader,
            enable_idempotence: false,
            ..producer_config(SHORT_DELIVERY_TIMEOUT, Duration::from_secs(1))
        })
        .await
        .unwrap_or_else(|e| panic!("an acks=1 producer: {e}"));
    let alone = lone
        .send(record(&topic, "k", "leader-only"))
        .await
        .expect("the leader alone acknowledges an acks=1 write, whatever its ISR");
    assert_eq!(alone.offset, committed.offset + 1);
    faults.step(&format!(
        "broker {leader} alone holds offset {}; watching its high watermark",
        alone.offset
    ));
    let until = Instant::now() + FROZEN_WATCH;
    let mut watched = 0usize;
    while Instant::now() < until {
        if let Ok(hws) = faults.high_watermarks(&topic).await {
            watched += 1;
            assert_eq!(
                hw(hws),
                frozen,
                "the high watermark moved while the ISR was [{leader}], under \
                 min.insync.replicas: a record only the leader holds became visible"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert!(
        watched > 0,
        "the high watermark could not be read while the ISR was [{leader}]"
    );
    faults.step(&format!(
        "{watched} reads: the high watermark stayed at {frozen}"
    ));

    heal(faults).await;
    let deadline = Instant::now() + HEAL_DEADLINE;
    loop {
        let now = faults.high_watermarks(&topic).await.map(hw).unwrap_or(0);
        if now > alone.offset {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the high watermark ({now}) never passed offset {} after the brokers came back",
            alone.offset
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    faults.step("the high watermark passed the leader-only record");
    a_fresh_group_reads(
        faults,
        &*log,
        &topic,
        "bf-frozen-hw",
        &["committed", "leader-only"],
    )
    .await;
}

/// Both followers of a fresh partition are paused one after the other (each fenced and out of
/// the ISR; the second leaves it under `min.insync.replicas`, so it becomes an eligible leader
/// replica), then the leader, last in the ISR, is killed and the followers resume. While the
/// old leader is still dead, the second follower leads (from the ELR), writes go on once the
/// other follower caught up, and a fresh group reads exactly what was acknowledged.
pub async fn a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    let topic = fresh_topic(faults, "bf-elr", 1).await;
    let p = producer(&log, HEAL_DEADLINE, Duration::from_secs(5)).await;
    p.send(record(&topic, "k", "committed"))
        .await
        .expect("an acks=all write on a healthy cluster");
    let partition = full_partition(faults, &topic).await;
    let leader = partition.leader.expect("a leader");
    let followers: Vec<BrokerId> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != leader)
        .collect();
    let (first, second) = (followers[0], followers[1]);
    let isr_is = |want: Vec<BrokerId>| {
        let topic = topic.clone();
        move |v: &ClusterView| {
            v.partition(&topic, 0).is_some_and(|p| {
                let mut isr = p.isr.clone();
                isr.sort_unstable();
                isr == want
            })
        }
    };
    pause(faults, first).await;
    let mut rest = vec![leader, second];
    rest.sort_unstable();
    wait_for_view(
        faults,
        &format!("broker {first} left the ISR of {topic}/0"),
        Some(&topic),
        FAILOVER_DEADLINE,
        isr_is(rest),
    )
    .await;
    pause(faults, second).await;
    wait_for_view(
        faults,
        &format!("broker {leader} is alone in the ISR of {topic}/0"),
        Some(&topic),
        FAILOVER_DEADLINE,
        isr_is(vec![leader]),
    )
    .await;
    kill(faults, leader).await;
    for b in [first, second] {
        faults
            .resume_broker(b)
            .await
            .unwrap_or_else(|e| panic!("resuming broker {b}: {e:#}"));
        faults.step(&format!("resumed broker {b}"));
    }
    wait_for_view(
        faults,
        &format!(
            "broker {second}, which left the ISR under min.insync.replicas, leads {topic}/0 \
             while broker {leader} is dead"
        ),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            v.partition(&topic, 0)
                .is_some_and(|p| p.leader == Some(second))
        },
    )
    .await;
    faults.step(&format!("broker {second} leads {topic}/0"));
    p.send(record(&topic, "k", "after"))
        .await
        .expect("an acks=all write once the other follower caught up");
    heal(faults).await;
    a_fresh_group_reads(faults, &*log, &topic, "bf-elr", &["committed", "after"]).await;
}

/// On a lossy topic (min ISR 1, unclean election on), a consumer joins (its group coordinated
/// by the leader, so the group stays up while the followers are away) and reads `warm`; both
/// followers are paused, the leader alone acknowledges and commits `old-1..=3`, and the
/// consumer reads them. The leader is killed and the followers resume: one leads uncleanly,
/// without those records. The producer that wrote them is then broken for good (its next
/// send is `Fatal`: its sequence is out of order on the new leader); a new producer writes
/// `new-1..=3` at the same offsets, and the consumer reads them there. After heal a fresh
/// group reads `warm, new-1, new-2, new-3`.
pub async fn after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    let topic = faults
        .fresh_lossy_topic("bf-lossy")
        .await
        .unwrap_or_else(|e| panic!("a lossy topic: {e:#}"));
    let old = producer(&log, RIDE_OUT_DELIVERY_TIMEOUT, Duration::from_secs(5)).await;
    old.send(record(&topic, "k", "warm"))
        .await
        .expect("a write on a healthy cluster");
    let leader = full_partition(faults, &topic)
        .await
        .leader
        .expect("a leader");
    let followers: Vec<BrokerId> = faults
        .brokers()
        .iter()
        .map(|b| b.id)
        .filter(|b| *b != leader)
        .collect();
    let group = faults
        .group_coordinated_by("bf-lossy", leader)
        .await
        .unwrap_or_else(|e| panic!("a group coordinated by broker {leader}: {e:#}"));
    let mut consumer = log
        .consumer(ConsumerConfig::new(group), &[topic.as_str()])
        .await
        .unwrap_or_else(|e| panic!("a consumer of {topic}: {e}"));
    let mut read: Vec<ConsumedRecord> = Vec::new();
    read_payload(&mut *consumer, &mut read, "warm").await;
    for b in &followers {
        pause(faults, *b).await;
    }
    wait_for_view(
        faults,
        &format!("broker {leader} is alone in the ISR of {topic}/0"),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| v.partition(&topic, 0).is_some_and(|p| p.isr == [leader]),
    )
    .await;
    for i in 1..=3 {
        old.send(record(&topic, "k", &format!("old-{i}")))
            .await
            .expect("the leader alone commits on a topic with min.insync.replicas=1");
    }
    read_payload(&mut *consumer, &mut read, "old-3").await;
    faults.step("the consumer read old-1..=3 from the lone leader");

    kill(faults, leader).await;
    for b in &followers {
        faults
            .resume_broker(*b)
            .await
            .unwrap_or_else(|e| panic!("resuming broker {b}: {e:#}"));
    }
    faults.step("resumed the followers");
    wait_for_view(
        faults,
        &format!("an out-of-sync follower leads {topic}/0 (unclean election)"),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            v.partition(&topic, 0)
                .is_some_and(|p| p.leader.is_some_and(|l| l != leader))
        },
    )
    .await;
    faults.step("an out-of-sync follower leads");

    let broken = old.send(record(&topic, "k", "from-the-old-producer")).await;
    assert!(
        matches!(broken, Err(EventLogError::Fatal(_))),
        "an idempotent producer whose acknowledged records the new leader lacks must fail \
         for good (librdkafka: OUT_OF_ORDER_SEQUENCE_NUMBER on the head-of-line batch), got \
         {broken:?}"
    );
    let again = old.send(record(&topic, "k", "from-the-old-producer")).await;
    assert!(
        matches!(again, Err(EventLogError::Fatal(_))),
        "a producer broken for good stays broken, got {again:?}"
    );
    let new = producer(&log, HEAL_DEADLINE, Duration::from_secs(5)).await;
    let mut offsets = Vec::new();
    for i in 1..=3 {
        let ack = new
            .send(record(&topic, "k", &format!("new-{i}")))
            .await
            .expect("a new producer writes to the new leader");
        offsets.push(ack.offset);
    }
    assert_eq!(offsets, [1, 2, 3], "the new leader's log lacks old-1..=3");
    read_payload(&mut *consumer, &mut read, "new-3").await;
    // (A rebalance may make the consumer read a record twice; which records are where counts.)
    let new_read: BTreeSet<(i64, String)> = read
        .iter()
        .map(|r| (r.offset, payload_of(r)))
        .filter(|(_, p)| p.starts_with("new-"))
        .collect();
    assert_eq!(
        new_read,
        BTreeSet::from([
            (1, "new-1".to_owned()),
            (2, "new-2".to_owned()),
            (3, "new-3".to_owned())
        ]),
        "the consumer reads the new records at the offsets it had read the old ones at"
    );
    heal(faults).await;
    a_fresh_group_reads(
        faults,
        &*log,
        &topic,
        "bf-lossy",
        &["warm", "new-1", "new-2", "new-3"],
    )
    .await;
}

/// The preferred leader of a fresh partition is killed and another replica takes over; once
/// it is back (restarted, caught up, in the ISR) the cluster's leader rebalance gives it the
/// partition again, within its check interval (`leader.imbalance.check.interval.seconds` of
/// `kafka-cluster.properties`). A record sent before the kill and one sent after the move
/// back are both read.
pub async fn a_restarted_broker_leads_the_partitions_it_is_preferred_for_again(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    let topic = fresh_topic(faults, "bf-preferred", 1).await;
    let p = producer(&log, HEAL_DEADLINE, Duration::from_secs(5)).await;
    p.send(record(&topic, "k", "before"))
        .await
        .expect("an acks=all write on a healthy cluster");
    let view = wait_for_view(
        faults,
        &format!("{topic}/0 is led by its preferred replica with a full ISR"),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            v.partition(&topic, 0)
                .is_some_and(|p| p.is_full() && p.leader == p.replicas.first().copied())
        },
    )
    .await;
    let preferred = view
        .partition(&topic, 0)
        .and_then(|p| p.leader)
        .expect("a leader");
    kill(faults, preferred).await;
    wait_for_view(
        faults,
        &format!("another replica leads {topic}/0"),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            v.partition(&topic, 0)
                .is_some_and(|p| p.leader.is_some_and(|l| l != preferred))
        },
    )
    .await;
    heal(faults).await;
    wait_for_view(
        faults,
        &format!("broker {preferred} leads {topic}/0 again"),
        Some(&topic),
        HEAL_DEADLINE,
        |v| {
            v.partition(&topic, 0)
                .is_some_and(|p| p.leader == Some(preferred))
        },
    )
    .await;
    faults.step(&format!("broker {preferred} leads {topic}/0 again"));
    p.send(record(&topic, "k", "after"))
        .await
        .expect("an acks=all write after the move back");
    a_fresh_group_reads(faults, &*log, &topic, "bf-preferred", &["before", "after"]).await;
}

/// The first broker of rack msk survives; the two others are killed. Once every partition is
/// led by the survivor alone in its ISR, a send is refused, retriably, with
/// `NotEnoughReplicas` (or `Timeout` if the leader's own answer is `NOT_ENOUGH_REPLICAS`).
/// Events committed to `store`'s outbox meanwhile stay pending while the relay keeps trying
/// and is refused; after both brokers restart the outbox drains, and the topic holds exactly
/// the committed event ids — a repeated event id only as a separate relay send (its own
/// `send-id`), never as a producer duplicate. `store` must be empty.
pub async fn with_two_brokers_down_producers_are_refused_and_the_outbox_holds_events_until_heal(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
    store: Arc<dyn Store<KvSchema>>,
) -> Refusals {
    const PARTITIONS: i32 = 3;
    /// Events committed while the cluster refuses writes, over a few keys.
    const EVENTS: usize = 24;
    const KEYS: usize = 6;
    /// Relay rounds that must be refused (every key once) before the outbox is judged "held".
    const REFUSED_ROUNDS: usize = 2;
    const REFUSED_DEADLINE: Duration = Duration::from_secs(45);
    const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

    let topic = fresh_topic(faults, "bf-outbox", PARTITIONS).await;
    let brokers = faults.brokers();
    let survivor = brokers
        .iter()
        .find(|b| b.rack == "msk")
        .expect("a broker in rack msk")
        .id;
    let killed: Vec<BrokerId> = brokers
        .iter()
        .map(|b| b.id)
        .filter(|b| *b != survivor)
        .collect();
    for b in &killed {
        kill(faults, *b).await;
    }
    wait_for_view(
        faults,
        &format!("every partition of {topic} is led by broker {survivor} alone in its ISR"),
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            let ps = v.topic(&topic);
            ps.len() == PARTITIONS as usize
                && ps
                    .iter()
                    .all(|p| p.leader == Some(survivor) && p.isr == [survivor])
        },
    )
    .await;
    faults.step(&format!("every ISR of {topic} shrank to [{survivor}]"));

    let probe = producer(&log, SHORT_DELIVERY_TIMEOUT, Duration::from_secs(1)).await;
    let refused = probe
        .send(record(&topic, "probe", "probe"))
        .await
        .expect_err("a write to a partition with one in-sync replica (min 2) must be refused");
    assert!(
        matches!(
            refused,
            EventLogError::NotEnoughReplicas | EventLogError::Timeout(_)
        ) && refused.is_retriable(),
        "below min.insync.replicas a send must fail with NotEnoughReplicas or Timeout \
         (retriable), got {refused:?}"
    );
    let leader = match faults
        .single_attempt_send(record(&topic, "probe", "single-attempt-probe"))
        .await
    {
        None => None,
        Some(Ok(ack)) => panic!(
            "a send without retries was acknowledged at {ack:?} with one in-sync replica (min 2)"
        ),
        Some(Err(e)) => Some(e),
    };
    faults.step(&format!(
        "a send was refused with {refused:?}; the leader's own answer: {leader:?}"
    ));
    match (&refused, &leader) {
        (EventLogError::NotEnoughReplicas, None | Some(EventLogError::NotEnoughReplicas)) => {}
        (EventLogError::Timeout(_), Some(EventLogError::NotEnoughReplicas)) => {}
        (EventLogError::Timeout(_), None) => panic!(
            "the producer timed out below min.insync.replicas, and the adapter cannot show \
             that the leader answered NOT_ENOUGH_REPLICAS (single_attempt_send)"
        ),
        _ => panic!(
            "below min.insync.replicas the leader must answer NOT_ENOUGH_REPLICAS; the \
             producer said {refused:?}, the leader {leader:?}"
        ),
    }

    // Business transactions commit while the cluster refuses writes.
    let mut committed = BTreeSet::new();
    for i in 0..EVENTS {
        let key = format!("order-{}", i % KEYS);
        let event_id = unique("ev");
        store
            .commit(
                Tx::new()
                    .put("orders", &key, serde_json::json!({ "step": i }), true)
                    .emit(OutboxMessage {
                        event_id: event_id.clone(),
                        topic: topic.clone(),
                        key: key.clone(),
                        payload: serde_json::json!({ "order": key, "step": i }),
                        headers: vec![],
                    }),
            )
            .await
            .expect("a business transaction commits while Kafka refuses writes");
        committed.insert(event_id);
    }

    let sends = Arc::new(Mutex::new(SendLog::default()));
    let counting: Arc<dyn EventLog> = Arc::new(Counting {
        inner: log.clone(),
        sends: sends.clone(),
    });
    let signal = OutboxSignal::default();
    let (trigger, shutdown) = Shutdown::new();
    let relay = tokio::spawn(run_relay(
        store.clone(),
        counting,
        producer_config(SHORT_DELIVERY_TIMEOUT, Duration::from_secs(1)),
        RelayConfig {
            idle_poll: Duration::from_millis(200),
            ..RelayConfig::default()
        },
        "conformance-relay".into(),
        signal.clone(),
        shutdown,
    ));
    signal.notify();

    // The relay tries (the first row of every key per round) and is refused; nothing drains.
    let deadline = Instant::now() + REFUSED_DEADLINE;
    loop {
        let (acked, refused) = {
            let s = lock(&sends);
            (s.acked, s.refused.len())
        };
        assert_eq!(
            acked, 0,
            "a relay send was acknowledged with one in-sync replica"
        );
        let pending = store
            .outbox_pending(EVENTS * 2)
            .await
            .expect("outbox_pending");
        assert_eq!(
            pending.len(),
            EVENTS,
            "with two brokers down the outbox must keep every event pending"
        );
        if refused >= REFUSED_ROUNDS * KEYS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay made {refused} refused sends in {REFUSED_DEADLINE:?}, wanted {}",
            REFUSED_ROUNDS * KEYS
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let relay_refusals: BTreeMap<&'static str, usize> =
        lock(&sends)
            .refused
            .iter()
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(variant(e)).or_default() += 1;
                m
            });
    faults.step(&format!(
        "outbox holds all {EVENTS}; relay refused with {relay_refusals:?}"
    ));
    {
        let s = lock(&sends);
        assert!(
            s.refused.iter().all(|e| matches!(
                e,
                EventLogError::NotEnoughReplicas | EventLogError::Timeout(_)
            )),
            "below min ISR the relay must be refused with NotEnoughReplicas or Timeout: {:?}",
            s.refused
        );
    }

    heal(faults).await;
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let pending = store
            .outbox_pending(EVENTS * 2)
            .await
            .expect("outbox_pending");
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} events still pending {DRAIN_DEADLINE:?} after the brokers came back",
            pending.len()
        );
        signal.notify();
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let (acked, refused_total) = {
        let s = lock(&sends);
        (s.acked, s.refused.len())
    };
    faults.step(&format!(
        "outbox drained; relay sends: {acked} acknowledged, {refused_total} refused"
    ));
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(30), relay)
        .await
        .expect("the relay stops on shutdown")
        .expect("relay task");

    let read = read_everything(
        faults,
        log.as_ref(),
        &topic,
        "bf_outbox",
        "a new group after the heal",
    )
    .await;
    // Each position once; the probes (no event id) may or may not have been written.
    let by_position: BTreeMap<(i32, i64), &ConsumedRecord> =
        read.iter().map(|r| ((r.partition, r.offset), r)).collect();
    let mut sends_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in by_position.values() {
        if let Some(event_id) = r.header(EVENT_ID_HEADER) {
            let send_id = r
                .header(SEND_ID_HEADER)
                .unwrap_or_else(|| panic!("relayed record without {SEND_ID_HEADER}: {r:?}"));
            sends_of
                .entry(event_id.to_owned())
                .or_default()
                .push(send_id.to_owned());
        }
    }
    let on_topic: BTreeSet<String> = sends_of.keys().cloned().collect();
    assert_eq!(
        on_topic, committed,
        "the topic must hold exactly the committed event ids"
    );
    let mut resent = 0;
    for (event_id, send_ids) in &sends_of {
        let distinct: BTreeSet<_> = send_ids.iter().collect();
        assert_eq!(
            distinct.len(),
            send_ids.len(),
            "event {event_id} is on the topic twice from one relay send (a producer duplicate): \
             {send_ids:?}"
        );
        resent += send_ids.len() - 1;
    }
    faults.step(&format!(
        "topic holds all {EVENTS} event ids; {resent} extra copies, each a separate relay send"
    ));
    Refusals {
        producer: refused,
        leader,
        relay: relay_refusals,
    }
}

/// What every producer made through [`Counting`] saw.
#[derive(Default, Debug)]
struct SendLog {
    acked: usize,
    refused: Vec<EventLogError>,
}

/// An [`EventLog`] that counts the outcomes of its producers' sends (to wait on the relay
/// having tried and been refused, instead of sleeping).
struct Counting {
    inner: Arc<dyn EventLog>,
    sends: Arc<Mutex<SendLog>>,
}

struct CountingProducer {
    inner: Arc<dyn Producer>,
    sends: Arc<Mutex<SendLog>>,
}

#[async_trait]
impl Producer for CountingProducer {
    async fn send(&self, record: ProducedRecord) -> Result<RecordAck, EventLogError> {
        let result = self.inner.send(record).await;
        let mut s = lock(&self.sends);
        match &result {
            Ok(_) => s.acked += 1,
            Err(e) => s.refused.push(e.clone()),
        }
        result
    }
}

#[async_trait]
impl EventLog for Counting {
    async fn producer(&self, config: ProducerConfig) -> Result<Arc<dyn Producer>, EventLogError> {
        Ok(Arc::new(CountingProducer {
            inner: self.inner.producer(config).await?,
            sends: self.sends.clone(),
        }))
    }

    async fn consumer(
        &self,
        config: ConsumerConfig,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, EventLogError> {
        self.inner.consumer(config, topics).await
    }
}

/// An error's variant, without its detail.
pub fn variant(e: &EventLogError) -> &'static str {
    match e {
        EventLogError::NotEnoughReplicas => "NotEnoughReplicas",
        EventLogError::Timeout(_) => "Timeout",
        EventLogError::Unavailable(_) => "Unavailable",
        EventLogError::Fenced => "Fenced",
        EventLogError::UnknownTopic(_) => "UnknownTopic",
        EventLogError::Fatal(_) => "Fatal",
    }
}

// ------------------------------------------------------------------------------ consumer groups

type Position = (i32, i64);

/// What a group member did.
#[derive(Default, Debug)]
struct MemberLog {
    /// Records whose processing finished.
    processed: BTreeSet<Position>,
    /// Records it processed that one of its successful commits covers.
    committed: BTreeSet<Position>,
    /// Commits refused (the batch is read again by whoever owns the partition next).
    refused_commits: Vec<EventLogError>,
    committed_batches: usize,
    /// The batch processed but never committed when it died.
    lost_batch: BTreeSet<Position>,
    dead: bool,
}

/// Records one batch holds: small, so a batch is a part of a member's backlog.
const RECORDS_PER_BATCH: usize = 5;

/// The "work" each record takes.
const WORK_PER_RECORD: Duration = Duration::from_millis(20);

/// A group member: poll, process each record of a batch, commit the batch. Once `die` is set
/// it processes its next batch and returns without committing it (the caller then kills it).
async fn member<C: Consumer + ?Sized>(
    consumer: &mut C,
    state: Arc<Mutex<MemberLog>>,
    die: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let mut buffered: std::collections::VecDeque<ConsumedRecord> = Default::default();
    while !stop.load(Ordering::SeqCst) {
        if buffered.is_empty() {
            match consumer.poll(POLL_TIMEOUT).await {
                Ok(records) => buffered.extend(records),
                Err(e) if e.is_retriable() => continue,
                Err(e) => panic!("a group member's poll failed: {e:?}"),
            }
            if buffered.is_empty() {
                continue;
            }
        }
        let n = buffered.len().min(RECORDS_PER_BATCH);
        let batch: Vec<ConsumedRecord> = buffered.drain(..n).collect();
        for r in &batch {
            // Simulated work, not a wait for anything.
            tokio::time::sleep(WORK_PER_RECORD).await;
            lock(&state).processed.insert((r.partition, r.offset));
        }
        if die.load(Ordering::SeqCst) {
            let mut s = lock(&state);
            s.lost_batch = batch.iter().map(|r| (r.partition, r.offset)).collect();
            s.dead = true;
            return;
        }
        let result = consumer.commit(&batch).await;
        let mut s = lock(&state);
        match result {
            Ok(()) => {
                // A commit covers every offset below it: also what this member processed
                // earlier on the partition in a batch whose own commit was refused (Kafka
                // does not check that a member still owns what it commits).
                let mut upto: BTreeMap<i32, i64> = BTreeMap::new();
                for r in &batch {
                    let o = upto.entry(r.partition).or_insert(r.offset);
                    *o = (*o).max(r.offset);
                }
                let covered: Vec<Position> = s
                    .processed
                    .iter()
                    .filter(|(p, o)| upto.get(p).is_some_and(|m| o <= m))
                    .copied()
                    .collect();
                s.committed.extend(covered);
                s.committed_batches += 1;
            }
            Err(e) => s.refused_commits.push(e),
        }
    }
}

/// Two members share a group and commit after processing. Once both have committed, one
/// processes a batch and dies without committing it and without leaving the group
/// ([`MortalConsumer::die`]): the group rebalances when its session times out, and the
/// survivor takes over its partitions from the committed offsets. Every produced record is
/// committed by the dead member or processed by the survivor, and the dead member's
/// uncommitted batch in particular is processed again by the survivor.
pub async fn a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    const PARTITIONS: i32 = 6;
    const BOTH_COMMITTED_DEADLINE: Duration = Duration::from_secs(40);
    const DEATH_DEADLINE: Duration = Duration::from_secs(30);
    const TAKEOVER_DEADLINE: Duration = Duration::from_secs(60);
    let topic = fresh_topic(faults, "bf-group", PARTITIONS).await;
    let group = unique("bf_group");
    let producer = producer(&log, Duration::from_secs(10), Duration::from_secs(3)).await;
    let mut produced: BTreeSet<Position> = BTreeSet::new();
    let mut next = 0usize;
    let mut produce = |n: usize| {
        let records: Vec<_> = (next..next + n)
            .map(|i| record(&topic, &format!("task-{i}"), &format!("t-{i}")))
            .collect();
        next += n;
        records
    };
    let acks = send_all(producer.as_ref(), &produce(120), "the first tasks").await;
    produced.extend(acks.iter().map(|a| (a.partition, a.offset)));

    let config = ConsumerConfig {
        session_timeout: Duration::from_secs(6),
        ..ConsumerConfig::new(group.clone())
    };
    let victim: Arc<Mutex<MemberLog>> = Arc::default();
    let survivor: Arc<Mutex<MemberLog>> = Arc::default();
    let die = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut mortal = faults
        .mortal_consumer(config.clone(), &topic)
        .await
        .unwrap_or_else(|e| panic!("joining group {group} (mortal member) failed: {e}"));
    let mut plain = log
        .consumer(config, &[topic.as_str()])
        .await
        .unwrap_or_else(|e| panic!("joining group {group} failed: {e}"));
    let tasks = [
        tokio::spawn({
            let (state, die, stop) = (victim.clone(), die.clone(), stop.clone());
            async move {
                member(mortal.as_mut(), state, die, stop).await;
                mortal.die().await;
            }
        }),
        tokio::spawn({
            let (state, never, stop) = (
                survivor.clone(),
                Arc::new(AtomicBool::new(false)),
                stop.clone(),
            );
            async move { member(plain.as_mut(), state, never, stop).await }
        }),
    ];
    let batches = |m: &Arc<Mutex<MemberLog>>| lock(m).committed_batches;

    // Both members own partitions once both have committed work; feed more while waiting,
    // in case one drained the backlog before the other joined.
    let deadline = Instant::now() + BOTH_COMMITTED_DEADLINE;
    while batches(&victim) == 0 || batches(&survivor) == 0 {
        assert!(
            Instant::now() < deadline,
            "both members should have committed a batch within {BOTH_COMMITTED_DEADLINE:?}: \
             victim {:?}, survivor {:?}",
            lock(&victim),
            lock(&survivor)
        );
        let idle =
            lock(&victim).processed.len() + lock(&survivor).processed.len() >= produced.len();
        if idle {
            let acks = send_all(producer.as_ref(), &produce(12), "more tasks").await;
            produced.extend(acks.iter().map(|a| (a.partition, a.offset)));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    faults.step(&format!(
        "both members committed work (victim {} batches, survivor {})",
        batches(&victim),
        batches(&survivor)
    ));

    // The victim dies after processing its next batch; give it one to be sure.
    die.store(true, Ordering::SeqCst);
    let acks = send_all(
        producer.as_ref(),
        &produce(60),
        "tasks for the victim's last batch",
    )
    .await;
    produced.extend(acks.iter().map(|a| (a.partition, a.offset)));
    let deadline = Instant::now() + DEATH_DEADLINE;
    while !lock(&victim).dead {
        assert!(
            Instant::now() < deadline,
            "the victim got no batch to die in within {DEATH_DEADLINE:?}: {:?}",
            lock(&victim)
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let lost = lock(&victim).lost_batch.clone();
    assert!(!lost.is_empty(), "the victim must die holding a batch");
    faults.step(&format!("victim died with an uncommitted batch {lost:?}"));

    let deadline = Instant::now() + TAKEOVER_DEADLINE;
    loop {
        let (left, relost): (Vec<Position>, Vec<Position>) = {
            let (v, s) = (lock(&victim), lock(&survivor));
            (
                produced
                    .iter()
                    .filter(|p| !v.committed.contains(p) && !s.processed.contains(p))
                    .copied()
                    .collect(),
                lost.iter()
                    .filter(|p| !s.processed.contains(p))
                    .copied()
                    .collect(),
            )
        };
        if left.is_empty() && relost.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{TAKEOVER_DEADLINE:?} after the victim died, records neither committed by it nor \
             processed by the survivor: {left:?}; of its uncommitted batch not re-processed: \
             {relost:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("member task");
    }
    let (v, s) = (lock(&victim), lock(&survivor));
    faults.step(&format!(
        "all {} records covered: victim committed {} ({} batches), survivor processed {} \
         ({} refused commits: {:?})",
        produced.len(),
        v.committed.len(),
        v.committed_batches,
        s.processed.len(),
        s.refused_commits.len() + v.refused_commits.len(),
        s.refused_commits
            .iter()
            .chain(&v.refused_commits)
            .take(3)
            .collect::<Vec<_>>()
    ));
}

/// Kafka's classic group protocol with eager assignors, as librdkafka speaks it: a
/// partition's new owner starts only once its old owner gave it up, which the old owner does
/// at its application's next poll (the JoinGroup barrier), so two members never work on one
/// partition at once. Member `a` reads and commits `warm` on the three partitions of a fresh
/// topic, then stops polling (a long batch; its heartbeats go on). `b` joins and `during` is
/// written to every partition: for [`BARRIER_HOLD`] `b` reads nothing. Once `a` polls again the group
/// rebalances, `b` reads from the offsets `a` committed (no `warm` record), and between them
/// the two read every `during` record.
pub async fn a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    const PARTITIONS: usize = 3;
    let topic = fresh_topic(faults, "bf-barrier", PARTITIONS as i32).await;
    let group = unique("bf_barrier");
    let producer = producer(&log, Duration::from_secs(10), Duration::from_secs(3)).await;
    let phase = |name: &str| -> Vec<ProducedRecord> {
        (0..16)
            .map(|i| record(&topic, &format!("k{i}"), &format!("{name}-{i}")))
            .collect()
    };
    let warm = phase("warm");
    let acks = send_all(producer.as_ref(), &warm, "warm").await;
    let spread: BTreeSet<i32> = acks.iter().map(|a| a.partition).collect();
    assert_eq!(
        spread.len(),
        PARTITIONS,
        "16 keys land on every partition: {spread:?}"
    );

    let config = ConsumerConfig {
        session_timeout: Duration::from_secs(6),
        max_poll_interval: Duration::from_secs(60),
        ..ConsumerConfig::new(group.clone())
    };
    let mut a = log
        .consumer(config.clone(), &[topic.as_str()])
        .await
        .unwrap_or_else(|e| panic!("a joining group {group} failed: {e}"));
    let mut a_read: Vec<ConsumedRecord> = Vec::new();
    let deadline = Instant::now() + READ_DEADLINE;
    while a_read.len() < warm.len() {
        assert!(
            Instant::now() < deadline,
            "a read {} of the {} warm records within {READ_DEADLINE:?}",
            a_read.len(),
            warm.len()
        );
        match a.poll(POLL_TIMEOUT).await {
            Ok(batch) => a_read.extend(batch),
            Err(e) if e.is_retriable() => {}
            Err(e) => panic!("a's poll failed: {e:?}"),
        }
    }
    a.commit(&a_read)
        .await
        .unwrap_or_else(|e| panic!("a committing warm failed: {e:?}"));
    faults.step("a read and committed warm on every partition, and stops polling");

    let mut b = log
        .consumer(config, &[topic.as_str()])
        .await
        .unwrap_or_else(|e| panic!("b joining group {group} failed: {e}"));
    let during = phase("during");
    send_all(producer.as_ref(), &during, "during").await;
    let mut b_read: Vec<ConsumedRecord> = Vec::new();
    let hold_end = Instant::now() + BARRIER_HOLD;
    while Instant::now() < hold_end {
        match b.poll(POLL_TIMEOUT).await {
            Ok(batch) => b_read.extend(batch),
            Err(e) if e.is_retriable() => {}
            Err(e) => panic!("b's poll failed: {e:?}"),
        }
    }
    assert!(
        b_read.is_empty(),
        "b read {:?} while a, which had not polled since, still owned every partition",
        b_read.iter().map(payload_of).collect::<Vec<_>>()
    );
    faults.step(&format!(
        "b read nothing for {BARRIER_HOLD:?} while a held its partitions"
    ));

    // `a` polls again (and commits what it reads): it gives its partitions up at that poll
    // and the group rebalances.
    let stop = Arc::new(AtomicBool::new(false));
    let a_after: Arc<Mutex<Vec<ConsumedRecord>>> = Arc::default();
    let a_task = tokio::spawn({
        let (stop, read) = (stop.clone(), a_after.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                match a.poll(POLL_TIMEOUT).await {
                    Ok(batch) if batch.is_empty() => {}
                    Ok(batch) => {
                        let _ = a.commit(&batch).await; // a refused commit: read again by b
                        lock(&read).extend(batch);
                    }
                    Err(e) if e.is_retriable() => {}
                    Err(e) => panic!("a's poll failed: {e:?}"),
                }
            }
        }
    });
    let wanted: BTreeSet<String> = during.iter().map(payload_of_produced).collect();
    let deadline = Instant::now() + READ_DEADLINE;
    loop {
        let seen: BTreeSet<String> = b_read
            .iter()
            .chain(lock(&a_after).iter())
            .map(payload_of)
            .collect();
        if !b_read.is_empty() && wanted.is_subset(&seen) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{READ_DEADLINE:?} after a polled again: b read {:?}, a read {:?} of {wanted:?}",
            b_read.iter().map(payload_of).collect::<Vec<_>>(),
            lock(&a_after).iter().map(payload_of).collect::<Vec<_>>()
        );
        match b.poll(POLL_TIMEOUT).await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                let _ = b.commit(&batch).await;
                b_read.extend(batch);
            }
            Err(e) if e.is_retriable() => {}
            Err(e) => panic!("b's poll failed: {e:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    a_task.await.expect("a's task");
    let b_warm: Vec<String> = b_read
        .iter()
        .map(payload_of)
        .filter(|p| p.starts_with("warm"))
        .collect();
    assert!(
        b_warm.is_empty(),
        "b must start from the offsets a committed; it read {b_warm:?}"
    );
    let b_partitions: BTreeSet<i32> = b_read.iter().map(|r| r.partition).collect();
    faults.step(&format!(
        "after a's poll b read {} records on partitions {b_partitions:?}, a {}",
        b_read.len(),
        lock(&a_after).len()
    ));
}

/// How long the barrier scenario watches the new member read nothing.
const BARRIER_HOLD: Duration = Duration::from_secs(8);

// ------------------------------------------------------------------------------ idempotence and per-key order

/// What the producing task of the idempotence scenario saw.
#[derive(Default)]
struct Sends {
    acked: Vec<(String, RecordAck)>,
    failed: Vec<(String, EventLogError)>,
}

/// An idempotent producer keeps pipelining (windows of 20 in flight, five keys) to a
/// one-partition topic while its leader is killed; after the failover it keeps going, then
/// the broker comes back. Every acknowledged record is in the log exactly once at its
/// acknowledged offset, no payload appears twice (a retried batch written twice would),
/// anything else in the log is a send that failed (outcome unknown), written once, and each
/// key's records are in the log in send order (per-key order across a leader kill; the
/// healthy-cluster form is [`super::event_log::records_with_one_key_are_read_in_send_order`]).
pub async fn idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    /// In-flight records per window of the producing task.
    const WINDOW: usize = 20;
    /// Acknowledgements wanted before the kill, and again after it.
    const ACKS_PER_PHASE: usize = 200;
    /// Bound on each phase's acknowledgements (the model, one batch in flight per partition
    /// and 50 ms to nsk and back, takes ~30 s of virtual time for one).
    const ACKS_DEADLINE: Duration = Duration::from_secs(90);
    let topic = fresh_topic(faults, "bf-idempotent", 1).await;
    let leader = leader_of(faults, &topic, 0).await;

    let producer = producer(&log, RIDE_OUT_DELIVERY_TIMEOUT, Duration::from_secs(2)).await;
    let sends = Arc::new(Mutex::new(Sends::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (producer, sends, stop, topic) =
            (producer.clone(), sends.clone(), stop.clone(), topic.clone());
        async move {
            let mut next = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let window: Vec<_> = (next..next + WINDOW)
                    .map(|i| record(&topic, &format!("k{}", i % 5), &format!("i-{i}")))
                    .collect();
                next += WINDOW;
                let results =
                    futures::future::join_all(window.iter().map(|r| producer.send(r.clone())))
                        .await;
                let mut s = lock(&sends);
                for (r, result) in window.iter().zip(results) {
                    let payload = String::from_utf8_lossy(&r.payload).into_owned();
                    match result {
                        Ok(ack) => s.acked.push((payload, ack)),
                        Err(e) => s.failed.push((payload, e)),
                    }
                }
            }
        }
    });
    let acked = || lock(&sends).acked.len();
    let wait_acked = |n: usize, what: &'static str| async move {
        let deadline = Instant::now() + ACKS_DEADLINE;
        while acked() < n {
            assert!(
                Instant::now() < deadline,
                "waited {ACKS_DEADLINE:?} and still not: {what}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };

    wait_acked(ACKS_PER_PHASE, "acknowledgements before the kill").await;
    let at_kill = acked();
    kill(faults, leader).await;
    faults.step(&format!(
        "killed leader {leader} with {at_kill} acknowledged, sends in flight"
    ));
    wait_acked(
        at_kill + ACKS_PER_PHASE,
        "acknowledgements after the leader was killed",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    task.await.expect("producing task");
    let new_leader = faults
        .cluster_view(Some(&topic))
        .await
        .and_then(|v| v.partition(&topic, 0).and_then(|p| p.leader));
    faults.step(&format!(
        "{} acknowledged; leader now {new_leader:?}",
        acked()
    ));
    assert_ne!(new_leader, Some(leader), "the killed broker cannot lead");

    heal(faults).await;
    wait_until_healthy(faults, "the old leader is back in every ISR").await;
    faults.step(&format!("restarted broker {leader}; every ISR full"));

    let read = read_everything(
        faults,
        log.as_ref(),
        &topic,
        "bf_idempotent",
        "a new group after the restart",
    )
    .await;
    let log_by_offset: BTreeMap<i64, String> =
        read.iter().map(|r| (r.offset, payload_of(r))).collect();
    let mut copies: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (offset, payload) in &log_by_offset {
        copies.entry(payload.as_str()).or_default().push(*offset);
    }
    let s = std::mem::take(&mut *lock(&sends));
    let twice: Vec<_> = copies.iter().filter(|(_, o)| o.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "records written more than once by an idempotent producer (payload, offsets): {twice:?}"
    );
    for (payload, ack) in &s.acked {
        assert_eq!(
            log_by_offset.get(&ack.offset).map(String::as_str),
            Some(payload.as_str()),
            "{payload} was acknowledged at offset {} but the log holds something else there",
            ack.offset
        );
    }
    // Per key, the log holds the records in send order (an idempotent producer keeps it
    // across retries): send indices ascend with the offset.
    let mut order: BTreeMap<String, Vec<(i64, usize)>> = BTreeMap::new();
    for r in &read {
        let index = payload_of(r)
            .strip_prefix("i-")
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("a record not sent by this scenario: {r:?}"));
        order
            .entry(r.key.clone())
            .or_default()
            .push((r.offset, index));
    }
    for (key, records) in &mut order {
        records.sort_unstable();
        records.dedup();
        assert!(
            records.windows(2).all(|w| w[0].1 < w[1].1),
            "records of key {key} are not in send order in the log (offset, send index): \
             {records:?}"
        );
    }
    let acked_offsets: BTreeSet<i64> = s.acked.iter().map(|(_, a)| a.offset).collect();
    let unacked: Vec<_> = log_by_offset
        .iter()
        .filter(|(o, _)| !acked_offsets.contains(o))
        .filter(|(_, p)| !s.failed.iter().any(|(f, _)| f == *p))
        .collect();
    assert!(
        unacked.is_empty(),
        "the log holds records at offsets nobody acknowledged and that did not fail: {unacked:?}"
    );
    faults.step(&format!(
        "log of {} records holds each of {} acknowledged exactly once; {} sends failed: {:?}",
        log_by_offset.len(),
        s.acked.len(),
        s.failed.len(),
        s.failed.iter().take(3).collect::<Vec<_>>()
    ));
}

// ------------------------------------------------------------------------------ racks

/// Records produced in rack msk are all read, unchanged, by a group member with
/// `client.rack = nsk`, and again by one with `client.rack = msk`. Each one's fetches are
/// served only by brokers of its own rack: the nsk broker serves the nsk consumer also the
/// partitions another broker leads (follower fetching through the cluster's
/// `RackAwareReplicaSelector`), so it serves it as a follower at least once.
pub async fn a_consumer_is_served_by_a_broker_in_its_own_rack(
    log: Arc<dyn EventLog>,
    faults: &dyn BrokerFaults,
) {
    /// With six partitions the nsk broker leads only some, so most reads in rack nsk have a
    /// leader elsewhere.
    const PARTITIONS: i32 = 6;
    let topic = fresh_topic(faults, "bf-rack", PARTITIONS).await;
    let producer = producer(&log, Duration::from_secs(10), Duration::from_secs(3)).await;
    let sent: Vec<_> = (0..60)
        .map(|i| record(&topic, &format!("k{i}"), &format!("r-{i}")))
        .collect();
    let acks = send_all(producer.as_ref(), &sent, "with every broker up").await;
    let view = wait_for_view(
        faults,
        "every partition has a leader",
        Some(&topic),
        FAILOVER_DEADLINE,
        |v| {
            let ps = v.topic(&topic);
            ps.len() == PARTITIONS as usize && ps.iter().all(|p| p.leader.is_some())
        },
    )
    .await;
    let leaders: BTreeMap<i32, BrokerId> = view
        .topic(&topic)
        .iter()
        .filter_map(|p| Some((p.partition, p.leader?)))
        .collect();
    assert!(
        leaders.values().any(|l| rack_of(faults, *l) != "nsk"),
        "some partition must be led outside rack nsk, or follower fetching is not exercised: \
         {leaders:?}"
    );

    for rack in ["nsk", "msk"] {
        let config = ConsumerConfig {
            client_rack: Some(rack.into()),
            ..ConsumerConfig::new(unique("bf_rack"))
        };
        let who = format!("a consumer in rack {rack}");
        let read = read_until(log.as_ref(), config, &topic, &last_offsets(&acks), &who).await;
        assert_acked_were_read(&sent, &acks, &read, &format!("read from rack {rack}"));
        let served = faults
            .fetches_served(&topic, rack, &last_offsets(&acks))
            .await
            .unwrap_or_else(|e| panic!("fetch evidence for rack {rack}: {e:#}"));
        faults.step(&format!(
            "{who} read all {}; leaders {leaders:?}; fetches served per broker {served:?}",
            acks.len()
        ));
        let serving: Vec<BrokerId> = served
            .iter()
            .filter(|(_, f)| f.as_leader + f.as_follower > 0)
            .map(|(b, _)| *b)
            .collect();
        assert!(!serving.is_empty(), "no broker served {who}: {served:?}");
        for b in &serving {
            assert_eq!(
                rack_of(faults, *b),
                rack,
                "broker {b} (rack {}) served {who}; only brokers of rack {rack} may: {served:?}",
                rack_of(faults, *b)
            );
        }
        if rack == "nsk" {
            assert!(
                served.values().any(|f| f.as_follower > 0),
                "the nsk broker must serve {who} as a follower (partitions led elsewhere): \
                 {served:?}"
            );
        }
    }
}

// ------------------------------------------------------------------------------ helpers

/// Polls [`BrokerFaults::cluster_view`] until `cond` holds; panics after `limit`, showing the
/// last view.
pub async fn wait_for_view(
    faults: &dyn BrokerFaults,
    what: &str,
    topic: Option<&str>,
    limit: Duration,
    mut cond: impl FnMut(&ClusterView) -> bool + Send,
) -> ClusterView {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(v) = faults.cluster_view(topic).await {
            if cond(&v) {
                return v;
            }
            last = Some(v);
        }
        if Instant::now() >= deadline {
            let shown = last.map(|v| {
                let unhealthy: Vec<_> = v
                    .partitions
                    .iter()
                    .filter(|p| !p.is_full())
                    .take(10)
                    .collect();
                format!(
                    "alive brokers {:?}; partitions not full: {unhealthy:?}",
                    v.alive
                )
            });
            panic!("waited {limit:?} and still not: {what}; last metadata: {shown:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until every broker is alive and every partition of every topic is led with all
/// replicas in sync; panics after [`HEAL_DEADLINE`].
pub async fn wait_until_healthy(faults: &dyn BrokerFaults, what: &str) -> ClusterView {
    let all: BTreeSet<BrokerId> = faults.brokers().iter().map(|b| b.id).collect();
    wait_for_view(faults, what, None, HEAL_DEADLINE, |v| {
        v.alive == all && v.partitions.iter().all(PartitionView::is_full)
    })
    .await
}

async fn fresh_topic(faults: &dyn BrokerFaults, prefix: &str, partitions: i32) -> String {
    faults
        .fresh_topic(prefix, partitions)
        .await
        .unwrap_or_else(|e| panic!("a fresh topic {prefix}* with {partitions} partitions: {e:#}"))
}

async fn kill(faults: &dyn BrokerFaults, broker: BrokerId) {
    faults
        .kill_broker(broker)
        .await
        .unwrap_or_else(|e| panic!("killing broker {broker}: {e:#}"));
    faults.step(&format!("killed broker {broker}"));
}

/// Partition 0 of `topic` once it is led with every replica in sync.
async fn full_partition(faults: &dyn BrokerFaults, topic: &str) -> PartitionView {
    wait_for_view(
        faults,
        &format!("{topic}/0 is led with a full ISR"),
        Some(topic),
        FAILOVER_DEADLINE,
        |v| v.partition(topic, 0).is_some_and(PartitionView::is_full),
    )
    .await
    .partition(topic, 0)
    .expect("the partition")
    .clone()
}

/// Reads `topic` as a fresh group (named from `group_prefix`) up to its high watermarks and
/// asserts it finds exactly `payloads`, in order.
async fn a_fresh_group_reads(
    faults: &dyn BrokerFaults,
    log: &dyn EventLog,
    topic: &str,
    group_prefix: &str,
    payloads: &[&str],
) {
    let read = read_everything(faults, log, topic, group_prefix, "a fresh group").await;
    let read: Vec<String> = read.iter().map(payload_of).collect();
    assert_eq!(read, payloads, "what a fresh group reads from {topic}");
}

/// Polls `consumer` into `read` until a record with `payload` is among them; panics after
/// [`READ_DEADLINE`].
async fn read_payload(consumer: &mut dyn Consumer, read: &mut Vec<ConsumedRecord>, payload: &str) {
    let deadline = Instant::now() + READ_DEADLINE;
    while !read.iter().any(|r| payload_of(r) == payload) {
        assert!(
            Instant::now() < deadline,
            "the consumer did not read {payload} within {READ_DEADLINE:?}; it read {:?}",
            read.iter()
                .map(|r| (r.offset, payload_of(r)))
                .collect::<Vec<_>>()
        );
        match consumer.poll(POLL_TIMEOUT).await {
            Ok(batch) => read.extend(batch),
            Err(e) if e.is_retriable() => {}
            Err(e) => panic!("the consumer's poll failed: {e:?}"),
        }
    }
}

async fn pause(faults: &dyn BrokerFaults, broker: BrokerId) {
    faults
        .pause_broker(broker)
        .await
        .unwrap_or_else(|e| panic!("pausing broker {broker}: {e:#}"));
    faults.step(&format!("paused broker {broker}"));
}

async fn heal(faults: &dyn BrokerFaults) {
    faults
        .restart_killed_brokers()
        .await
        .unwrap_or_else(|e| panic!("restarting the killed brokers: {e:#}"));
    faults.step("restarted the killed brokers");
}

/// The current leader of `topic`/`partition`, waiting for one.
async fn leader_of(faults: &dyn BrokerFaults, topic: &str, partition: i32) -> BrokerId {
    wait_for_view(
        faults,
        &format!("{topic}/{partition} has a leader"),
        Some(topic),
        FAILOVER_DEADLINE,
        |v| {
            v.partition(topic, partition)
                .is_some_and(|p| p.leader.is_some())
        },
    )
    .await
    .partition(topic, partition)
    .and_then(|p| p.leader)
    .expect("a leader")
}

fn rack_of(faults: &dyn BrokerFaults, broker: BrokerId) -> String {
    faults
        .brokers()
        .into_iter()
        .find(|b| b.id == broker)
        .map(|b| b.rack)
        .unwrap_or_else(|| panic!("broker {broker} is not one of the cluster's"))
}

/// A name nobody used before: `{prefix}_{uuid}` (random through [`ids`], so a simulation
/// seed replays it).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", ids::uuid_v4().simple())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The seed's producer (`acks=all`, idempotent) in rack msk, with the given timeouts.
fn producer_config(delivery_timeout: Duration, request_timeout: Duration) -> ProducerConfig {
    ProducerConfig {
        client_id: "broker-faults".into(),
        client_rack: Some("msk".into()),
        delivery_timeout,
        request_timeout,
        ..ProducerConfig::default()
    }
}

async fn producer(
    log: &Arc<dyn EventLog>,
    delivery_timeout: Duration,
    request_timeout: Duration,
) -> Arc<dyn Producer> {
    log.producer(producer_config(delivery_timeout, request_timeout))
        .await
        .unwrap_or_else(|e| panic!("creating a producer with the seed's settings failed: {e}"))
}

/// A record whose payload is `payload` (also its `seq` header).
fn record(topic: &str, key: &str, payload: &str) -> ProducedRecord {
    ProducedRecord {
        topic: topic.to_owned(),
        key: key.to_owned(),
        payload: payload.as_bytes().to_vec(),
        headers: vec![(SEQ_HEADER.to_owned(), payload.to_owned())],
    }
}

fn payload_of(r: &ConsumedRecord) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

fn payload_of_produced(r: &ProducedRecord) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

/// Sends every record, all in flight at once (started in order); panics on any failure.
async fn send_all(
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
                    payload_of_produced(r),
                    r.key
                )
            })
        })
        .collect()
}

/// The last acknowledged offset of each partition.
fn last_offsets(acks: &[RecordAck]) -> BTreeMap<i32, i64> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for a in acks {
        let l = last.entry(a.partition).or_insert(a.offset);
        *l = (*l).max(a.offset);
    }
    last
}

/// The last offset below each non-zero high watermark.
/// Reads `topic` up to its current high watermarks through a new group `{group_prefix}_…`.
async fn read_everything(
    faults: &dyn BrokerFaults,
    log: &dyn EventLog,
    topic: &str,
    group_prefix: &str,
    who: &str,
) -> Vec<ConsumedRecord> {
    let high = faults
        .high_watermarks(topic)
        .await
        .unwrap_or_else(|e| panic!("high watermarks of {topic}: {e:#}"));
    read_until(
        log,
        ConsumerConfig::new(unique(group_prefix)),
        topic,
        &below(&high),
        who,
    )
    .await
}

fn below(high: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    high.iter()
        .filter(|(_, h)| **h > 0)
        .map(|(p, h)| (*p, h - 1))
        .collect()
}

/// Reads `topic` through a new member of `config.group_id` until, on every partition of
/// `targets`, it reached the target offset; panics at [`READ_DEADLINE`]. Returns every
/// record read, in order, repeats included.
async fn read_until(
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

/// Every acknowledged record was read back, unchanged, at its position.
fn assert_acked_were_read(
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
