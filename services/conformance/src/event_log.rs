//! The [`EventLog`] conformance suite: what service logic may rely on from any event log
//! (the Kafka adapter against a real cluster, the simulation's model).
//!
//! Each scenario is a public async function that panics, saying what was expected, on the
//! first violation. Topics are not part of the port, so the caller creates them: every
//! scenario needs its own **empty** topic that nobody else writes (a few partitions, the
//! seed's replication) and a consumer group name never used before. Scenarios produce with
//! the seed's producer settings (`acks=all`, idempotence on) and wait for records with a
//! deadline, never a fixed sleep.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use tokio::time::Instant;

use platform::{
    partitioner::partition_for_key,
    ports::event_log::{
        ConsumedRecord, Consumer, ConsumerConfig, EventLog, PartitionLag, ProducedRecord, Producer,
        ProducerConfig, RecordAck,
    },
};

/// Bound on reading records back through a consumer group, joining the group included.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// Bound on one consumer poll while reading back.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// Header carrying a record's sequence number within its key.
const SEQ_HEADER: &str = "conformance-seq";

/// Records produced with the seed's producer are all read back, unchanged, by a new consumer
/// group, at the partitions and offsets their acknowledgements named.
pub async fn acked_records_are_read_back_by_a_consumer_group(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
) {
    let sent = keyed_records(topic, 10, 3);
    let acks = send_pipelined(log, &sent).await;
    let read = read_back(log, topic, group, &acks).await;
    assert_log_holds_exactly(&sent, &acks, &read);
}

/// Records of one key sent in order (pipelined, without waiting for each acknowledgement) all
/// land on one partition, at ascending offsets, and a consumer reads them in send order.
/// This is the idempotent producer's ordering guarantee, which the outbox relay relies on.
pub async fn records_with_one_key_are_read_in_send_order(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
) {
    const KEYS: usize = 4;
    const RECORDS_PER_KEY: usize = 25;
    let sent = keyed_records(topic, KEYS, RECORDS_PER_KEY);
    let acks = send_pipelined(log, &sent).await;

    let mut by_key: BTreeMap<&str, Vec<RecordAck>> = BTreeMap::new();
    for (record, ack) in sent.iter().zip(&acks) {
        by_key.entry(&record.key).or_default().push(*ack);
    }
    for (key, key_acks) in &by_key {
        assert!(
            key_acks
                .iter()
                .all(|a| a.partition == key_acks[0].partition),
            "records of key {key} must all land on one partition: {key_acks:?}"
        );
        assert!(
            key_acks.windows(2).all(|w| w[0].offset < w[1].offset),
            "records of key {key} sent in order must get ascending offsets: {key_acks:?}"
        );
    }

    let read = read_back(log, topic, group, &acks).await;
    let mut seen: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut order: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &read {
        if seen.insert((r.partition, r.offset)) {
            order.entry(r.key.clone()).or_default().push(seq_of(r));
        }
    }
    for key in by_key.keys() {
        let got = order.get(*key).cloned().unwrap_or_default();
        assert_eq!(
            got,
            (0..RECORDS_PER_KEY).collect::<Vec<_>>(),
            "a consumer must read the records of key {key} in send order"
        );
    }
}

/// A record lands on the partition Kafka's default partitioner (murmur2 of the key, as the
/// Java client does) picks among the topic's `partitions` — the placement the simulation's
/// model uses too.
pub async fn keys_land_on_the_partition_kafkas_default_partitioner_picks(
    log: &dyn EventLog,
    topic: &str,
    partitions: i32,
) {
    let sent = keyed_records(topic, 60, 1);
    let acks = send_pipelined(log, &sent).await;
    for (record, ack) in sent.iter().zip(&acks) {
        let expected = partition_for_key(record.key.as_bytes(), partitions);
        assert_eq!(
            ack.partition, expected,
            "key {} landed on partition {}, Kafka's default partitioner picks {expected} of {partitions}",
            record.key, ack.partition
        );
    }
}

/// A group member commits part of what it read and leaves; the next member of the group
/// starts exactly at the committed offsets (partitions without a commit from the earliest):
/// nothing before them comes back, nothing after them is missing.
pub async fn a_reopened_group_continues_after_its_committed_offsets(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
) {
    let sent = keyed_records(topic, 8, 5);
    let acks = send_pipelined(log, &sent).await;

    let mut first = subscribe(log, topic, group).await;
    let read = read_until_acked(first.as_mut(), &acks, "the first member of the group").await;
    first
        .commit(&[])
        .await
        .unwrap_or_else(|e| panic!("committing no records must be a no-op, got {e}"));

    // Commit the first half (by offset) of what each partition returned.
    let mut by_partition: BTreeMap<i32, Vec<ConsumedRecord>> = BTreeMap::new();
    for r in distinct(&read) {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut to_commit = Vec::new();
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, mut records) in by_partition {
        records.sort_by_key(|r| r.offset);
        let half = &records[..records.len() / 2];
        if let Some(last) = half.last() {
            committed.insert(partition, last.offset + 1);
        }
        to_commit.extend_from_slice(half);
    }
    first.commit(&to_commit).await.unwrap_or_else(|e| {
        panic!("the only member of a group must be able to commit what it read, got {e}")
    });
    drop(first);

    let expected: BTreeSet<(i32, i64)> = acks
        .iter()
        .filter(|a| committed.get(&a.partition).is_none_or(|c| a.offset >= *c))
        .map(|a| (a.partition, a.offset))
        .collect();
    let mut second = subscribe(log, topic, group).await;
    let reread = read_until_acked(second.as_mut(), &acks, "the reopened group").await;
    let got: BTreeSet<(i32, i64)> = reread.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(
        got, expected,
        "a reopened group must read exactly the records at or after its committed offsets \
         {committed:?} (as partition, offset)"
    );
}

/// A member's lag on each partition is what it has not read yet: none once `poll` returned
/// every acknowledged record, then exactly the records acknowledged since on each partition
/// while it does not poll (records a client fetched ahead but `poll` did not return count),
/// and none again once it read them.
pub async fn a_members_lag_is_what_it_has_not_read_yet(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
) {
    let acks = send_pipelined(log, &keyed_records(topic, 4, 3)).await;
    let mut member = subscribe(log, topic, group).await;
    read_until_acked(member.as_mut(), &acks, "the member").await;
    let behind = |lags: &[PartitionLag]| -> BTreeMap<i32, i64> {
        lags.iter()
            .filter(|l| l.topic == topic && l.lag() > 0)
            .map(|l| (l.partition, l.lag()))
            .collect()
    };
    let lags = lag_of(member.as_mut()).await;
    let read: BTreeSet<i32> = acks.iter().map(|a| a.partition).collect();
    let known: BTreeSet<i32> = lags.iter().map(|l| l.partition).collect();
    assert!(
        read.is_subset(&known),
        "the lag must cover every partition the member read ({read:?}), got {lags:?}"
    );
    assert_eq!(
        behind(&lags),
        BTreeMap::new(),
        "a member that read every acknowledged record is behind on nothing: {lags:?}"
    );

    let more = send_pipelined(log, &keyed_records(topic, 3, 2)).await;
    let mut expected: BTreeMap<i32, i64> = BTreeMap::new();
    for a in &more {
        *expected.entry(a.partition).or_default() += 1;
    }
    let lags = lag_of(member.as_mut()).await;
    assert_eq!(
        behind(&lags),
        expected,
        "a member that has not polled since more records were acknowledged is behind by \
         exactly those, per partition: {lags:?}"
    );

    read_until_acked(member.as_mut(), &more, "the member, again").await;
    let lags = lag_of(member.as_mut()).await;
    assert_eq!(
        behind(&lags),
        BTreeMap::new(),
        "after reading them the member is behind on nothing: {lags:?}"
    );
}

/// The member's lag; a refusal (no leader known yet, a broker busy) is asked again a few
/// times.
async fn lag_of(member: &mut dyn Consumer) -> Vec<PartitionLag> {
    let mut last = None;
    for _ in 0..5 {
        match member.lag().await {
            Ok(lags) => return lags,
            Err(e) => last = Some(e),
        }
    }
    panic!("the member's lag was refused five times, last: {last:?}")
}

/// Every record an idempotent producer had acknowledged is in the log exactly once: the log
/// holds no record at an offset that was not acknowledged (a retried batch written twice
/// would sit at such an offset, below the last acknowledged one).
pub async fn an_idempotent_producer_writes_each_acked_record_exactly_once(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
) {
    let sent = keyed_records(topic, 20, 10);
    let acks = send_pipelined(log, &sent).await;
    let distinct_acks: BTreeSet<(i32, i64)> =
        acks.iter().map(|a| (a.partition, a.offset)).collect();
    assert_eq!(
        distinct_acks.len(),
        acks.len(),
        "two records were acknowledged at the same partition and offset: {acks:?}"
    );
    let read = read_back(log, topic, group, &acks).await;
    assert_log_holds_exactly(&sent, &acks, &read);
}

/// `keys` keys with `per_key` records each, interleaved (k0#0, k1#0, …, k0#1, …).
fn keyed_records(topic: &str, keys: usize, per_key: usize) -> Vec<ProducedRecord> {
    (0..per_key)
        .flat_map(|seq| {
            (0..keys).map(move |k| ProducedRecord {
                topic: topic.to_owned(),
                key: format!("key-{k}"),
                payload: format!("key-{k}#{seq}").into_bytes(),
                headers: vec![
                    (SEQ_HEADER.to_owned(), seq.to_string()),
                    ("event-id".to_owned(), format!("{topic}/key-{k}/{seq}")),
                ],
            })
        })
        .collect()
}

/// Sends every record with the seed's producer, all in flight at once, started in order.
async fn send_pipelined(log: &dyn EventLog, records: &[ProducedRecord]) -> Vec<RecordAck> {
    let producer = log
        .producer(ProducerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("creating a producer with the seed's settings failed: {e}"));
    let producer: &dyn Producer = producer.as_ref();
    let results = futures::future::join_all(records.iter().map(|r| producer.send(r.clone()))).await;
    results
        .into_iter()
        .zip(records)
        .map(|(result, record)| {
            result.unwrap_or_else(|e| {
                panic!(
                    "sending key {} to {} with acks=all on a healthy cluster failed: {e}",
                    record.key, record.topic
                )
            })
        })
        .collect()
}

async fn subscribe(log: &dyn EventLog, topic: &str, group: &str) -> Box<dyn Consumer> {
    log.consumer(ConsumerConfig::new(group), &[topic])
        .await
        .unwrap_or_else(|e| panic!("joining group {group} on {topic} failed: {e}"))
}

/// Reads `topic` through a new member of `group` until every acknowledged offset is covered.
async fn read_back(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
    acks: &[RecordAck],
) -> Vec<ConsumedRecord> {
    let mut consumer = subscribe(log, topic, group).await;
    read_until_acked(consumer.as_mut(), acks, "a new consumer group").await
}

/// Polls until, on every partition with acknowledged records, the consumer reached the last
/// acknowledged offset; panics at [`READ_DEADLINE`].
async fn read_until_acked(
    consumer: &mut dyn Consumer,
    acks: &[RecordAck],
    who: &str,
) -> Vec<ConsumedRecord> {
    let mut last_acked: BTreeMap<i32, i64> = BTreeMap::new();
    for a in acks {
        let last = last_acked.entry(a.partition).or_insert(a.offset);
        *last = (*last).max(a.offset);
    }
    let deadline = Instant::now() + READ_DEADLINE;
    let mut read: Vec<ConsumedRecord> = Vec::new();
    let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
    while last_acked
        .iter()
        .any(|(p, last)| reached.get(p).is_none_or(|r| r < last))
    {
        if Instant::now() >= deadline {
            panic!(
                "{who} did not read up to the acknowledged offsets {last_acked:?} within \
                 {READ_DEADLINE:?}; it reached {reached:?}"
            );
        }
        match consumer.poll(POLL_TIMEOUT).await {
            Ok(batch) => {
                for r in &batch {
                    let at = reached.entry(r.partition).or_insert(r.offset);
                    *at = (*at).max(r.offset);
                }
                read.extend(batch);
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, "poll failed on a healthy cluster; polling again");
            }
            Err(e) => panic!("{who}: poll failed: {e}"),
        }
    }
    read
}

/// The log (as read) holds exactly the acknowledged records, each unchanged at its
/// acknowledged partition and offset.
fn assert_log_holds_exactly(sent: &[ProducedRecord], acks: &[RecordAck], read: &[ConsumedRecord]) {
    let by_position: BTreeMap<(i32, i64), &ConsumedRecord> =
        read.iter().map(|r| ((r.partition, r.offset), r)).collect();
    for (record, ack) in sent.iter().zip(acks) {
        let Some(got) = by_position.get(&(ack.partition, ack.offset)) else {
            panic!(
                "the record acknowledged at partition {} offset {} (key {}) was not read back",
                ack.partition, ack.offset, record.key
            );
        };
        assert_eq!(
            (got.topic.as_str(), got.key.as_str(), got.payload.as_slice()),
            (
                record.topic.as_str(),
                record.key.as_str(),
                record.payload.as_slice()
            ),
            "the record at partition {} offset {} is not the one acknowledged there",
            ack.partition,
            ack.offset
        );
        for (name, value) in &record.headers {
            assert_eq!(
                got.header(name),
                Some(value.as_str()),
                "header {name} of the record at partition {} offset {} must come back",
                ack.partition,
                ack.offset
            );
        }
    }
    let acked: BTreeSet<(i32, i64)> = acks.iter().map(|a| (a.partition, a.offset)).collect();
    let extra: Vec<_> = by_position
        .keys()
        .filter(|position| !acked.contains(position))
        .collect();
    assert!(
        extra.is_empty(),
        "the log holds records nobody acknowledged (duplicates?) at (partition, offset) {extra:?}"
    );
}

/// Records once each by position, in the order first read.
fn distinct(read: &[ConsumedRecord]) -> Vec<ConsumedRecord> {
    let mut seen = BTreeSet::new();
    read.iter()
        .filter(|r| seen.insert((r.partition, r.offset)))
        .cloned()
        .collect()
}

fn seq_of(record: &ConsumedRecord) -> usize {
    record
        .header(SEQ_HEADER)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("record without a {SEQ_HEADER} header: {record:?}"))
}
