//! Acknowledged writes survive a broker crash; idempotent retries across a leader crash do
//! not duplicate. Model counterparts: `acknowledged_writes_survive_leader_broker_restart`,
//! `idempotent_producer_retrying_after_a_lost_reply_does_not_duplicate`.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use platform::ports::{ConsumerConfig, EventLog, EventLogError, Producer, RecordAck};
use tokio::time::Instant;

use crate::{
    brokers::Outage,
    support::{
        assert_acked_were_read, below_watermarks, exclusive, fresh_topic, kafka, last_offsets,
        payload_of, producer_config, read_until, record, send_all, step, unique, Cluster,
        HEAL_DEADLINE, NSK_BROKER, POLL_INTERVAL,
    },
};

/// Records produced before each kill, and again while the broker is down.
const RECORDS_PER_PHASE: usize = 30;

/// Long enough to ride out a dead leader's fencing (~9 s) and the election after it.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// For the leader of partition 0 and then one of its followers (in the other rack, so both
/// racks lose a broker once): produce with acks=all, SIGKILL the broker, produce again (two
/// in-sync replicas are still enough), read everything acknowledged so far back through a
/// new group, restart the broker and wait for full ISRs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_loss_of_any_one_broker() {
    let x = exclusive("acknowledged_writes_survive_the_loss_of_any_one_broker").await;
    let mut outage = Outage::new();
    let log = kafka().await;
    let cluster = Cluster::new();
    let partitions = 3;
    let topic = fresh_topic(&log, &cluster, "bf-any-one", partitions).await;

    let meta = cluster.snapshot(Some(&topic)).await.expect("metadata");
    let p0 = meta.partition(&topic, 0).expect("partition 0").clone();
    let follower = if p0.leader == NSK_BROKER {
        *p0.replicas
            .iter()
            .find(|r| **r != p0.leader)
            .expect("a follower")
    } else {
        NSK_BROKER
    };
    let victims = [p0.leader, follower];
    step(
        &x,
        format!("partition 0: {p0:?}; victims in turn: {victims:?}"),
    );

    let producer = log
        .producer(producer_config(DELIVERY_TIMEOUT, REQUEST_TIMEOUT))
        .await
        .expect("producer");
    let mut sent = Vec::new();
    let mut acks: Vec<RecordAck> = Vec::new();
    for (round, victim) in victims.into_iter().enumerate() {
        let before: Vec<_> = (0..RECORDS_PER_PHASE)
            .map(|i| record(&topic, &format!("k{}", i % 7), &format!("r{round}-up-{i}")))
            .collect();
        acks.extend(send_all(producer.as_ref(), &before, "with every broker up").await);
        sent.extend(before);

        outage.kill(victim).await;
        step(&x, format!("killed broker {victim}"));
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
        step(&x, format!("{} records acknowledged so far", acks.len()));

        let read = read_until(
            &log,
            ConsumerConfig::new(unique("bf_any_one")),
            &topic,
            &last_offsets(&acks),
            &format!("a new group with broker {victim} down"),
        )
        .await;
        assert_acked_were_read(&sent, &acks, &read, &when);
        step(
            &x,
            format!("read back all {} with broker {victim} down", acks.len()),
        );

        outage.heal().await;
        step(&x, format!("restarted broker {victim}"));
        cluster
            .wait_healthy("the restarted broker is back in every ISR", HEAL_DEADLINE)
            .await;
        step(&x, "every ISR full again");
    }
    log.delete_topic(&topic).await.expect("delete topic");
}

/// What the producing task saw.
#[derive(Default)]
struct Sends {
    acked: Vec<(String, RecordAck)>,
    failed: Vec<(String, EventLogError)>,
}

/// In-flight records per window of the producing task.
const WINDOW: usize = 20;
/// Acknowledgements wanted before the kill, and again after it.
const ACKS_PER_PHASE: usize = 200;

/// An idempotent producer keeps pipelining (windows of 20 in flight) to a one-partition topic
/// while its leader is SIGKILLed; after the failover it keeps going, then the broker comes
/// back. Every acknowledged record is in the log exactly once at its acknowledged offset, and
/// no payload appears twice (a retried batch written twice would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_do_not_duplicate_across_a_leader_kill() {
    let x = exclusive("idempotent_retries_do_not_duplicate_across_a_leader_kill").await;
    let mut outage = Outage::new();
    let log = kafka().await;
    let cluster = Cluster::new();
    let topic = fresh_topic(&log, &cluster, "bf-idempotent", 1).await;
    let leader = cluster
        .snapshot(Some(&topic))
        .await
        .and_then(|s| s.partition(&topic, 0).map(|p| p.leader))
        .expect("partition 0 has a leader");

    let producer: Arc<dyn Producer> = log
        .producer(producer_config(DELIVERY_TIMEOUT, Duration::from_secs(2)))
        .await
        .expect("producer");
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
                let mut s = sends.lock().expect("sends");
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
    let acked = || sends.lock().expect("sends").acked.len();
    let wait_acked = |n: usize, what: &'static str| {
        let limit = Duration::from_secs(45);
        async move {
            let deadline = Instant::now() + limit;
            while acked() < n {
                assert!(
                    Instant::now() < deadline,
                    "waited {limit:?} and still not: {what}"
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    };

    wait_acked(ACKS_PER_PHASE, "acknowledgements before the kill").await;
    let at_kill = acked();
    outage.kill(leader).await;
    step(
        &x,
        format!("killed leader {leader} with {at_kill} acknowledged, sends in flight"),
    );
    wait_acked(
        at_kill + ACKS_PER_PHASE,
        "acknowledgements after the leader was killed",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    task.await.expect("producing task");
    let new_leader = cluster
        .snapshot(Some(&topic))
        .await
        .and_then(|s| s.partition(&topic, 0).map(|p| p.leader));
    step(
        &x,
        format!("{} acknowledged; leader now {new_leader:?}", acked()),
    );
    assert_ne!(new_leader, Some(leader), "the killed broker cannot lead");

    outage.heal().await;
    cluster
        .wait_healthy("the old leader is back in every ISR", HEAL_DEADLINE)
        .await;
    step(&x, format!("restarted broker {leader}; every ISR full"));

    let high = cluster.high_watermarks(&topic, 1).await;
    let read = read_until(
        &log,
        ConsumerConfig::new(unique("bf_idempotent")),
        &topic,
        &below_watermarks(&high),
        "a new group after the restart",
    )
    .await;
    let mut log_by_offset: BTreeMap<i64, String> = BTreeMap::new();
    for r in &read {
        log_by_offset.insert(r.offset, payload_of(r));
    }
    let mut copies: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (offset, payload) in &log_by_offset {
        copies.entry(payload.as_str()).or_default().push(*offset);
    }
    let s = std::mem::take(&mut *sends.lock().expect("sends"));
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
    // Anything else in the log must be a send that failed (outcome unknown), written once.
    let acked_offsets: std::collections::BTreeSet<i64> =
        s.acked.iter().map(|(_, a)| a.offset).collect();
    let unacked: Vec<_> = log_by_offset
        .iter()
        .filter(|(o, _)| !acked_offsets.contains(o))
        .filter(|(_, p)| !s.failed.iter().any(|(f, _)| f == *p))
        .collect();
    assert!(
        unacked.is_empty(),
        "the log holds records at offsets nobody acknowledged and that did not fail: {unacked:?}"
    );
    step(
        &x,
        format!(
            "log of {} records holds each of {} acknowledged exactly once; {} sends failed: {:?}",
            log_by_offset.len(),
            s.acked.len(),
            s.failed.len(),
            s.failed.iter().take(3).collect::<Vec<_>>()
        ),
    );
    log.delete_topic(&topic).await.expect("delete topic");
}
