//! A consumer in rack nsk reads everything, and fetches from the nsk replica (follower
//! fetching through the cluster's `RackAwareReplicaSelector`).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use platform::ports::{ConsumerConfig, EventLog};
use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, Consumer as _, ConsumerContext},
    message::Message,
    ClientConfig,
};

use crate::support::{
    assert_acked_were_read, exclusive, fresh_topic, kafka, kafka_bootstrap, last_offsets,
    producer_config, read_until, record, send_all, step, unique, Cluster, NSK_BROKER,
    READ_DEADLINE,
};

/// Partitions: with six, the controller gives broker 3 the lead of only some, so most reads
/// in rack nsk have a leader elsewhere.
const PARTITIONS: i32 = 6;

/// Keeps librdkafka's latest statistics (JSON).
#[derive(Clone, Default)]
struct Stats(Arc<Mutex<Option<serde_json::Value>>>);

impl ClientContext for Stats {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(value) = serde_json::from_slice(statistics) {
            *self.0.lock().expect("stats") = Some(value);
        }
    }
}

impl ConsumerContext for Stats {}

/// Per partition of `topic` in `stats`: (leader, broker fetched from).
fn fetch_brokers(stats: &serde_json::Value, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let Some(partitions) = stats["topics"][topic]["partitions"].as_object() else {
        return BTreeMap::new();
    };
    partitions
        .iter()
        .filter_map(|(p, v)| {
            let p: i32 = p.parse().ok()?;
            (p >= 0).then(|| {
                (
                    p,
                    (
                        v["leader"].as_i64().unwrap_or(-1),
                        v["broker"].as_i64().unwrap_or(-1),
                    ),
                )
            })
        })
        .collect()
}

/// Records produced in rack msk are all read, unchanged, by a group member with
/// `client_rack = nsk` (the port's consumer). A librdkafka consumer with the same rack and
/// statistics on shows where fetches go: every partition is fetched from broker 3 (nsk), also
/// the ones another broker leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_client_rack_nsk_reads_everything() {
    let x = exclusive("a_consumer_with_client_rack_nsk_reads_everything").await;
    let log = kafka().await;
    let cluster = Cluster::new();
    let topic = fresh_topic(&log, &cluster, "bf-rack", PARTITIONS).await;
    let producer = log
        .producer(producer_config(
            Duration::from_secs(10),
            Duration::from_secs(3),
        ))
        .await
        .expect("producer");
    let sent: Vec<_> = (0..60)
        .map(|i| record(&topic, &format!("k{i}"), &format!("r-{i}")))
        .collect();
    let acks = send_all(producer.as_ref(), &sent, "with every broker up").await;

    let config = ConsumerConfig {
        client_rack: Some("nsk".into()),
        ..ConsumerConfig::new(unique("bf_rack"))
    };
    let read = read_until(
        &log,
        config,
        &topic,
        &last_offsets(&acks),
        "a consumer in rack nsk",
    )
    .await;
    assert_acked_were_read(&sent, &acks, &read, "read from rack nsk");
    step(&x, format!("the nsk consumer read all {}", acks.len()));

    // Where the fetches go: the same rack and group settings, with statistics.
    let stats = Stats::default();
    let observer: BaseConsumer<Stats> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("bf_rack_stats"))
        .set("client.rack", "nsk")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "200")
        .create_with_context(stats.clone())
        .expect("a consumer with statistics");
    observer.subscribe(&[&topic]).expect("subscribe");
    let wanted: BTreeSet<(i32, i64)> = acks.iter().map(|a| (a.partition, a.offset)).collect();
    let topic_for_stats = topic.clone();
    let wanted_by_observer = wanted.clone();
    let (got, placement) = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + READ_DEADLINE;
        let mut got = BTreeSet::new();
        loop {
            if let Some(Ok(m)) = observer.poll(Duration::from_millis(100)) {
                got.insert((m.partition(), m.offset()));
            }
            let placement = stats
                .0
                .lock()
                .expect("stats")
                .as_ref()
                .map(|s| fetch_brokers(s, &topic_for_stats))
                .unwrap_or_default();
            let all_from_nsk = placement.len() == PARTITIONS as usize
                && placement.values().all(|(_, b)| *b == i64::from(NSK_BROKER));
            if (got.is_superset(&wanted_by_observer) && all_from_nsk)
                || std::time::Instant::now() >= deadline
            {
                return (got, placement);
            }
        }
    })
    .await
    .expect("observer task");
    step(
        &x,
        format!("librdkafka statistics, partition -> (leader, fetched from): {placement:?}"),
    );
    assert!(
        got.is_superset(&wanted),
        "the observing nsk consumer missed {:?}",
        wanted.difference(&got).collect::<Vec<_>>()
    );
    assert_eq!(
        placement.len(),
        PARTITIONS as usize,
        "statistics must list every partition"
    );
    for (p, (leader, broker)) in &placement {
        assert_eq!(
            *broker,
            i64::from(NSK_BROKER),
            "partition {p} (leader {leader}) must be fetched from the nsk replica, broker \
             {NSK_BROKER}"
        );
    }
    assert!(
        placement
            .values()
            .any(|(leader, _)| *leader != i64::from(NSK_BROKER)),
        "some partition must be led outside nsk, or follower fetching was not exercised: \
         {placement:?}"
    );
    log.delete_topic(&topic).await.expect("delete topic");
}
