//! The model's page cache: Kafka acknowledges a write once it is in the in-sync replicas'
//! page caches, never fsyncs it, and relies on replication for durability. A process kill
//! keeps the page cache; a power loss drops what the host had not written back. So
//! `min.insync.replicas=1` loses acknowledged writes when a leader left alone in the ISR
//! loses power, and `min.insync.replicas=2` refuses those writes instead.
//!
//! Replay a failing run with the seed it prints: `MADSIM_TEST_SEED=<seed> ci/sim page_cache`.

use std::{sync::Arc, time::Duration};

use madsim::{
    runtime::{Handle, NodeHandle},
    time,
};
use platform::ports::{Acks, EventLogError, ProducedRecord, Producer, ProducerConfig};
use sim::kafka::{KafkaCluster, KafkaModelConfig, TopicSpec};

use crate::support::eventually;

const TOPIC: &str = "ledger";

fn cluster(min_insync_replicas: usize) -> KafkaCluster {
    let seed = Handle::current().seed();
    println!("seed {seed}; replay with MADSIM_TEST_SEED={seed} ci/sim page_cache");
    KafkaCluster::start(KafkaModelConfig {
        min_insync_replicas,
        ..KafkaModelConfig::seed_default().with_topics(vec![TopicSpec::new(TOPIC, 1)])
    })
}

fn client() -> NodeHandle {
    Handle::current()
        .create_node()
        .name("client")
        .ip("10.1.3.1".parse().expect("an ip"))
        .build()
}

/// Sends `count` records keyed `{label}-{i}` with `acks=all` from `node`; their results.
async fn send(
    node: &NodeHandle,
    producer: &Arc<dyn Producer>,
    label: &str,
    count: usize,
) -> Vec<Result<(), EventLogError>> {
    let (producer, label) = (producer.clone(), label.to_owned());
    node.spawn(async move {
        let mut out = Vec::new();
        for i in 0..count {
            let r = producer
                .send(ProducedRecord {
                    topic: TOPIC.into(),
                    key: format!("{label}-{i}"),
                    payload: format!("{label}-{i}").into_bytes(),
                    headers: vec![],
                })
                .await;
            out.push(r.map(|_| ()));
        }
        out
    })
    .await
    .expect("client task")
}

async fn producer(cluster: &KafkaCluster) -> Arc<dyn Producer> {
    cluster
        .event_log()
        .producer(ProducerConfig {
            client_id: "page-cache".into(),
            acks: Acks::All,
            enable_idempotence: true,
            client_rack: Some("msk".into()),
            delivery_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(1),
        })
        .await
        .expect("a producer")
}

fn log_end(cluster: &KafkaCluster, broker: &str) -> i64 {
    cluster
        .replica(broker, TOPIC, 0)
        .map_or(0, |r| r.log_end_offset)
}

fn isr_len(cluster: &KafkaCluster) -> usize {
    cluster.partition_state(TOPIC, 0).map_or(0, |s| s.isr.len())
}

/// Sleeps until just after the hosts' next page-cache writeback.
async fn past_next_writeback(cluster: &KafkaCluster) {
    let next = cluster.last_writeback()
        + Duration::from_millis(cluster.config().page_cache_writeback_interval_ms);
    time::sleep_until(next + Duration::from_millis(10)).await;
}

#[madsim::test]
async fn a_process_kill_keeps_the_page_cache_and_a_power_loss_drops_what_was_not_written_back() {
    let cluster = cluster(2);
    let node = client();
    let p = producer(&cluster).await;
    let follower = cluster
        .broker_nodes()
        .into_iter()
        .find(|b| cluster.leader_node(TOPIC, 0).is_none_or(|l| l.id != b.id))
        .expect("a follower");

    let written = send(&node, &p, "written-back", 5).await;
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    eventually(
        "the follower holds 5 records",
        Duration::from_secs(10),
        || log_end(&cluster, &follower.name) == 5,
    )
    .await;
    past_next_writeback(&cluster).await;
    let writeback = cluster.last_writeback();
    let cached = send(&node, &p, "cached", 5).await;
    assert!(cached.iter().all(Result::is_ok), "{cached:?}");
    eventually(
        "the follower holds 10 records",
        Duration::from_secs(3),
        || log_end(&cluster, &follower.name) == 10,
    )
    .await;
    assert_eq!(
        cluster.last_writeback(),
        writeback,
        "no writeback may happen between the second batch and the faults (seed-dependent timing)"
    );

    Handle::current().kill(follower.id);
    assert_eq!(
        log_end(&cluster, &follower.name),
        10,
        "a process kill keeps the page cache"
    );
    Handle::current().restart(follower.id);

    let lost = cluster.power_off(&follower.name);
    assert_eq!(
        lost,
        Some(5),
        "the records since the last writeback are lost"
    );
    assert_eq!(log_end(&cluster, &follower.name), 5);
    Handle::current().restart(follower.id);
    eventually(
        "the follower fetched the lost records again and rejoined the ISR",
        Duration::from_secs(30),
        || log_end(&cluster, &follower.name) == 10 && isr_len(&cluster) == 3,
    )
    .await;
    assert!(cluster.lost_acknowledged_writes(Acks::All).is_empty());
    assert_eq!(cluster.replica_divergence(TOPIC), Vec::<String>::new());
}

/// Both followers crash; the leader, alone in the ISR, is asked for five `acks=all` writes
/// right after a writeback, then loses power; everything restarts. Returns
/// `(writes acknowledged while alone, acknowledged writes lost)`.
async fn lone_leader_loses_power(min_insync_replicas: usize) -> (usize, usize) {
    let cluster = cluster(min_insync_replicas);
    let node = client();
    let p = producer(&cluster).await;
    let warm = send(&node, &p, "warm-up", 1).await;
    assert!(warm.iter().all(Result::is_ok), "{warm:?}");
    let leader = cluster.leader_node(TOPIC, 0).expect("a leader");
    let followers: Vec<_> = cluster
        .broker_nodes()
        .into_iter()
        .filter(|b| b.id != leader.id)
        .collect();
    for f in &followers {
        Handle::current().kill(f.id);
    }
    eventually(
        "the leader is alone in the ISR",
        Duration::from_secs(20),
        || isr_len(&cluster) == 1,
    )
    .await;

    past_next_writeback(&cluster).await;
    let alone = send(&node, &p, "alone", 5).await;
    let acknowledged = alone.iter().filter(|r| r.is_ok()).count();
    if min_insync_replicas > 1 {
        assert!(
            alone
                .iter()
                .all(|r| matches!(r, Err(EventLogError::NotEnoughReplicas))),
            "{alone:?}"
        );
    }
    cluster.power_off(&leader.name).expect("a broker");
    for f in &followers {
        Handle::current().restart(f.id);
    }
    Handle::current().restart(leader.id);
    eventually(
        "every replica is back in the ISR",
        Duration::from_secs(60),
        || isr_len(&cluster) == 3,
    )
    .await;
    assert_eq!(cluster.replica_divergence(TOPIC), Vec::<String>::new());
    (
        acknowledged,
        cluster.lost_acknowledged_writes(Acks::All).len(),
    )
}

#[madsim::test]
async fn min_insync_replicas_2_refuses_writes_a_lone_leader_would_lose_to_a_power_loss() {
    assert_eq!(lone_leader_loses_power(2).await, (0, 0));
}

#[madsim::test]
async fn min_insync_replicas_1_loses_the_writes_a_lone_leader_acknowledged_when_it_loses_power() {
    assert_eq!(lone_leader_loses_power(1).await, (5, 5));
}
