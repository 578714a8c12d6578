//! A consumer group rebalances after a member dies mid-batch and no record is skipped.
//! Model counterpart: `consumer_group_rebalances_when_a_member_node_dies_and_skips_no_record`.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use platform::ports::{Consumer, ConsumerConfig, EventLog, EventLogError};
use tokio::time::Instant;

use crate::support::{
    exclusive, fresh_topic, kafka_with, producer_config, record, send_all, step, unique, Cluster,
    POLL_INTERVAL,
};

/// Partitions of the work topic: the two members get three each.
const PARTITIONS: i32 = 6;

/// Records per poll: small, so a batch is a part of a member's backlog.
const RECORDS_PER_POLL: usize = 5;

/// The "work" each record takes (the model's workers take 100 ms).
const WORK_PER_RECORD: Duration = Duration::from_millis(20);

type Position = (i32, i64);

/// What a member did.
#[derive(Default, Debug)]
struct Member {
    /// Records whose processing finished.
    processed: BTreeSet<Position>,
    /// Records covered by one of its successful commits.
    committed: BTreeSet<Position>,
    /// Commits refused (the batch is read again by whoever owns the partition next).
    refused_commits: Vec<EventLogError>,
    committed_batches: usize,
    /// The batch processed but never committed when it died.
    lost_batch: BTreeSet<Position>,
    dead: bool,
}

/// A group member: poll, process each record, commit. Once `die` is set it processes its next
/// non-empty batch and then drops its consumer without committing it.
async fn member(
    mut consumer: Box<dyn Consumer>,
    state: Arc<Mutex<Member>>,
    die: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let batch = match consumer.poll(Duration::from_millis(300)).await {
            Ok(batch) => batch,
            Err(e) if e.is_retriable() => continue,
            Err(e) => panic!("a group member's poll failed: {e:?}"),
        };
        if batch.is_empty() {
            continue;
        }
        for r in &batch {
            tokio::time::sleep(WORK_PER_RECORD).await;
            state
                .lock()
                .expect("member")
                .processed
                .insert((r.partition, r.offset));
        }
        if die.load(Ordering::SeqCst) {
            let mut s = state.lock().expect("member");
            s.lost_batch = batch.iter().map(|r| (r.partition, r.offset)).collect();
            s.dead = true;
            drop(s);
            drop(consumer);
            return;
        }
        let result = consumer.commit(&batch).await;
        let mut s = state.lock().expect("member");
        match result {
            Ok(()) => {
                s.committed
                    .extend(batch.iter().map(|r| (r.partition, r.offset)));
                s.committed_batches += 1;
            }
            Err(e) => s.refused_commits.push(e),
        }
    }
}

/// Two members share a group; both commit after processing. Once both have committed, one
/// processes a batch and is dropped without committing it (its death; the drop leaves the
/// group). The survivor takes over its partitions from the committed offsets: every produced
/// record is committed by the dead member or processed by the survivor, and the dead
/// member's uncommitted batch in particular is processed again by the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped() {
    let x = exclusive("a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped").await;
    let log = kafka_with(|c| c.records_per_poll_max = RECORDS_PER_POLL).await;
    let cluster = Cluster::new();
    let topic = fresh_topic(&log, &cluster, "bf-group", PARTITIONS).await;
    let group = unique("bf_group");
    let producer = log
        .producer(producer_config(
            Duration::from_secs(10),
            Duration::from_secs(3),
        ))
        .await
        .expect("producer");
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
    let (victim, survivor) = (Arc::new(Mutex::default()), Arc::new(Mutex::default()));
    let (die, stop, never) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut tasks = Vec::new();
    for (state, die) in [(&victim, &die), (&survivor, &never)] {
        let consumer = log
            .consumer(config.clone(), &[topic.as_str()])
            .await
            .expect("a group member");
        tasks.push(tokio::spawn(member(
            consumer,
            Arc::clone(state),
            Arc::clone(die),
            stop.clone(),
        )));
    }
    let batches = |m: &Arc<Mutex<Member>>| m.lock().expect("member").committed_batches;

    // Both members own partitions once both have committed work; feed more while waiting,
    // in case one drained the backlog before the other joined.
    let deadline = Instant::now() + Duration::from_secs(40);
    while batches(&victim) == 0 || batches(&survivor) == 0 {
        assert!(
            Instant::now() < deadline,
            "both members should have committed a batch within 40 s: victim {:?}, survivor {:?}",
            victim.lock().expect("member"),
            survivor.lock().expect("member")
        );
        let idle = victim.lock().expect("member").processed.len()
            + survivor.lock().expect("member").processed.len()
            >= produced.len();
        if idle {
            let acks = send_all(producer.as_ref(), &produce(12), "more tasks").await;
            produced.extend(acks.iter().map(|a| (a.partition, a.offset)));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    step(
        &x,
        format!(
            "both members committed work (victim {} batches, survivor {})",
            batches(&victim),
            batches(&survivor)
        ),
    );

    // The victim dies after processing its next batch; give it one to be sure.
    die.store(true, Ordering::SeqCst);
    let acks = send_all(
        producer.as_ref(),
        &produce(60),
        "tasks for the victim's last batch",
    )
    .await;
    produced.extend(acks.iter().map(|a| (a.partition, a.offset)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !victim.lock().expect("member").dead {
        assert!(
            Instant::now() < deadline,
            "the victim got no batch to die in within 30 s: {:?}",
            victim.lock().expect("member")
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let lost = victim.lock().expect("member").lost_batch.clone();
    step(
        &x,
        format!("victim died with an uncommitted batch {lost:?}"),
    );

    let uncovered = || {
        let v = victim.lock().expect("member");
        let s = survivor.lock().expect("member");
        produced
            .iter()
            .filter(|p| !v.committed.contains(p) && !s.processed.contains(p))
            .copied()
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = uncovered();
        let relost: Vec<_> = {
            let s = survivor.lock().expect("member");
            lost.iter()
                .filter(|p| !s.processed.contains(p))
                .copied()
                .collect()
        };
        if left.is_empty() && relost.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "60 s after the victim died, records neither committed by it nor processed by the \
             survivor: {left:?}; of its uncommitted batch not re-processed: {relost:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("member task");
    }
    let v = std::mem::take(&mut *victim.lock().expect("member"));
    let s = std::mem::take(&mut *survivor.lock().expect("member"));
    step(
        &x,
        format!(
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
        ),
    );
    assert!(!lost.is_empty(), "the victim must die holding a batch");
    log.delete_topic(&topic).await.expect("delete topic");
}
