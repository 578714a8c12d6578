//! The inbox: a consumer loop that applies each event's effect exactly once in effect.
//!
//! Records are read with manual commits; each effect is committed in the service's store in
//! the same transaction as an inbox mark for the record's `event-id`, so a redelivered record
//! (after a crash or rebalance) hits [`StoreError::Duplicate`] and is skipped. Offsets are
//! committed to the event log only after the effect is durable.
//!
//! A record the effect can never process ([`EffectError::Poison`]: it does not decode, it
//! breaks a rule, the store refuses its effect as `Fatal`) goes to the topic's dead-letter
//! topic ([`crate::topics::dlq`]) with the reason and its origin in headers, and the batch
//! goes on; one bad record never stops a partition. A record whose effect failed
//! ([`EffectError::Failed`]: this record's processing went wrong, not the world around it)
//! is tried again up to [`ConsumerSettings::attempts_max`] deliveries, then dead-lettered with
//! the last reason. The count is kept by the consumer loop, so a record that moves to another
//! instance starts again: at most `attempts_max` deliveries per instance. Any other failure
//! ([`EffectError::Retry`]: the store or a dependency is down) re-reads the batch after a
//! backoff, for as long as it takes. Before a batch is read again, the records before the
//! failing one are committed, so they are neither applied nor dead-lettered again. Dead
//! letters are still at least once (a crash or a failed commit between a letter and its
//! commit sends it again; the `event-id` header tells copies apart).

use std::{sync::Arc, time::Duration};

use futures::{future::BoxFuture, FutureExt as _, StreamExt};

use crate::{
    outbox::EVENT_ID_HEADER,
    ports::{
        ConsumedRecord, Consumer, ConsumerConfig, EventLog, EventLogError, PartitionLag,
        ProducedRecord, Producer, ProducerConfig, Schema, Store, StoreError, Tx,
    },
    retry::{on_conflict, RetryPolicy},
    Shutdown,
};

/// Header of a dead-lettered record: why it could not be processed.
pub const DLQ_REASON_HEADER: &str = "dlq-reason";
/// Header of a dead-lettered record: where it came from, `<topic>/<partition>/<offset>`.
pub const DLQ_ORIGIN_HEADER: &str = "dlq-origin";
/// Header of a dead-lettered record: the consumer group that gave up on it.
pub const DLQ_CONSUMER_HEADER: &str = "dlq-consumer";

/// Why an effect did not produce its transaction.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// The record can never be processed: dead-lettered, and the batch goes on.
    #[error("poison record: {0}")]
    Poison(String),
    /// Processing failed for now (the store is down…): the batch is read again.
    #[error(transparent)]
    Retry(#[from] anyhow::Error),
    /// Processing this record failed: the batch is read again, and the record is
    /// dead-lettered after [`ConsumerSettings::attempts_max`] deliveries.
    #[error("processing failed: {0:#}")]
    Failed(anyhow::Error),
}

impl From<StoreError> for EffectError {
    fn from(e: StoreError) -> Self {
        EffectError::Retry(e.into())
    }
}

/// Turns one record into the transaction that applies its effect (without the inbox mark,
/// which [`apply_once`] adds), reading the store as it needs. `None`: no effect. Called
/// again when the transaction conflicts with a concurrent one.
pub type Effect<S> = Arc<
    dyn Fn(
            ConsumedRecord,
            Arc<dyn Store<S>>,
        ) -> BoxFuture<'static, Result<Option<Tx<<S as Schema>::Write>>, EffectError>>
        + Send
        + Sync,
>;

/// What a consumer loop needs besides its store and effect.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub consumer: ConsumerConfig,
    pub topics: Vec<String>,
    /// The producer that writes dead letters.
    pub producer: ProducerConfig,
    /// `false` is the mutant that applies each effect once per delivery.
    pub inbox: bool,
    /// Deliveries of one record that may end in [`EffectError::Failed`] before it is
    /// dead-lettered; `None`: tried for ever.
    pub attempts_max: Option<u32>,
    /// Look each record's inbox mark up before running its effect, for effects that are slow
    /// or call out (a redelivered batch then costs one lookup per record, not its effects
    /// again). Cheap effects skip the lookup: a duplicate's mark collides at commit.
    pub lookup_first: bool,
    /// How a batch's records are processed: all in order, one after another, or side by
    /// side in lanes by key (see [`Lanes`]).
    pub lanes: Lanes,
    /// Where the loop reports its lag (`consumer_lag`, every [`LAG_EVERY`]); none: not asked.
    pub metrics: Option<Arc<crate::metrics::Registry>>,
}

/// How often a consumer loop with metrics asks how far behind it is.
pub const LAG_EVERY: Duration = Duration::from_secs(2);

/// Bound on asking for the lag. A member that can ask apart ([`Consumer::lag_query`]) asks
/// beside its polls; one that cannot holds its next poll up to this long.
const LAG_TIMEOUT: Duration = Duration::from_millis(500);

/// A lag query's answer, or that it took longer than [`LAG_TIMEOUT`].
type LagAnswer = Result<Result<Vec<PartitionLag>, EventLogError>, tokio::time::error::Elapsed>;

/// How a consumer loop goes through a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// One record after another, in the batch's order.
    One,
    /// Side by side in lanes of one partition each (in its order), at most
    /// [`LANES_AT_ONCE`] at a time: for effects whose records of different partitions rarely
    /// touch the same rows. A lane that fails is tried once more at once, alone, from its
    /// failing record (a record whose effect fails then counts two deliveries toward
    /// `attempts_max`). After a failure, each partition is committed up to its first record
    /// not done. (Lanes by key — each order apart — measured slower on the notification
    /// benchmark: more transactions at once on two cores, no gain at saturation.)
    ByPartition,
}

/// Lanes of one batch in flight at once (each holds a store transaction).
pub const LANES_AT_ONCE: usize = 8;

/// Bound on the records whose failed attempts a consumer loop remembers.
const ATTEMPTS_TRACKED_MAX: usize = 10_000;

/// Consumes `settings.topics` as `settings.consumer.group_id` until shutdown, applying
/// `effect` once per event.
pub async fn run_consumer<S: Schema>(
    store: Arc<dyn Store<S>>,
    events: Arc<dyn EventLog>,
    settings: ConsumerSettings,
    effect: Effect<S>,
    shutdown: Shutdown,
) {
    let group = settings.consumer.group_id.clone();
    let backoff = RetryPolicy::forever(Duration::from_millis(100), Duration::from_secs(2));
    let mut failures = 0u32;
    let mut consumer: Option<Box<dyn Consumer>> = None;
    let mut lag_asked: Option<tokio::time::Instant> = None;
    // The lag query running beside the loop, if one is.
    let mut lag_running: Option<tokio::task::JoinHandle<LagAnswer>> = None;
    // The partitions whose lag this member last reported.
    let mut lag_reported: Vec<(String, i32)> = Vec::new();
    let records_of = Records {
        store,
        events: events.clone(),
        group: group.clone(),
        settings: settings.clone(),
        effect,
        dead_letters: tokio::sync::Mutex::new(None),
        attempts: std::sync::Mutex::new(Default::default()),
    };
    while !shutdown.is_requested() {
        let result = async {
            if consumer.is_none() {
                let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
                consumer = Some(events.consumer(settings.consumer.clone(), &topics).await?);
            }
            let c = consumer.as_mut().expect("set above");
            let records = c.poll(Duration::from_millis(500)).await?;
            // Each lane in order, the lanes side by side; a lane stops at its first failure.
            let lanes = lanes(&records, settings.lanes);
            let (of, batch) = (&records_of, &records);
            let outcomes: Vec<(usize, Option<anyhow::Error>)> =
                futures::stream::iter(lanes.clone().into_iter().map(|lane| async move {
                    for (n, &i) in lane.iter().enumerate() {
                        if let Err(e) = of.process(&batch[i]).await {
                            return (n, Some(e));
                        }
                    }
                    (lane.len(), None)
                }))
                .buffered(LANES_AT_ONCE)
                .collect()
                .await;
            let mut done = vec![false; records.len()];
            let mut failure = None;
            for (lane, (n, error)) in lanes.iter().zip(outcomes) {
                for &i in &lane[..n] {
                    done[i] = true;
                }
                let Some(error) = error else { continue };
                if lanes.len() == 1 {
                    failure = failure.or(Some(error));
                    continue;
                }
                // Side by side, two lanes may keep losing to each other on one row: the
                // rest of a failed lane gets a second try now, alone, before the batch is
                // read again (which re-joins the group).
                tracing::debug!(group = %group, error = format!("{error:#}"), "lane failed; trying it alone");
                for &i in &lane[n..] {
                    if let Err(e) = records_of.process(&records[i]).await {
                        failure = failure.or(Some(e));
                        break;
                    }
                    done[i] = true;
                }
            }
            if let Some(e) = failure {
                return Err(keep_progress(c.as_mut(), &committable(&records, &done), e).await);
            }
            if !records.is_empty() {
                c.commit(&records).await?;
            }
            if let Some(m) = &settings.metrics {
                if lag_running.as_ref().is_some_and(|q| q.is_finished()) {
                    if let Some(Ok(answer)) = lag_running.take().and_then(|q| q.now_or_never()) {
                        report_lag(answer, m, &group, &mut lag_reported);
                    }
                }
                if lag_running.is_none() && lag_asked.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
                    lag_asked = Some(tokio::time::Instant::now());
                    match c.lag_query() {
                        Some(query) => {
                            lag_running =
                                Some(tokio::spawn(tokio::time::timeout(LAG_TIMEOUT, query)));
                        }
                        None => {
                            let answer = tokio::time::timeout(LAG_TIMEOUT, c.lag()).await;
                            report_lag(answer, m, &group, &mut lag_reported);
                        }
                    }
                }
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = format!("{e:#}"), group = %group, failures, "consumer round failed; re-reading");
                // A fenced or broken consumer re-joins; uncommitted records are re-read.
                consumer = None;
                if let Some(query) = lag_running.take() {
                    query.abort();
                }
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(backoff.delay(failures)) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
    if let Some(query) = lag_running.take() {
        query.abort();
    }
}

/// The indices of `records` in lanes: one lane of all for [`Lanes::One`], else one lane per
/// partition (in the batch's order within it).
fn lanes(records: &[ConsumedRecord], how: Lanes) -> Vec<Vec<usize>> {
    if how == Lanes::One || records.len() <= 1 {
        return vec![(0..records.len()).collect()];
    }
    let mut lanes: std::collections::BTreeMap<(&str, i32), Vec<usize>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        lanes
            .entry((r.topic.as_str(), r.partition))
            .or_default()
            .push(i);
    }
    lanes.into_values().collect()
}

/// The records whose offsets may be committed when `done` tells which were taken: in each
/// partition, those before its first record not done.
fn committable(records: &[ConsumedRecord], done: &[bool]) -> Vec<ConsumedRecord> {
    let mut gapped: std::collections::BTreeSet<(&str, i32)> = Default::default();
    let mut out = Vec::new();
    for (r, &ok) in records.iter().zip(done) {
        let partition = (r.topic.as_str(), r.partition);
        if gapped.contains(&partition) {
            continue;
        }
        if ok {
            out.push(r.clone());
        } else {
            gapped.insert(partition);
        }
    }
    out
}

/// What processing one record needs, shared by the lanes of a batch.
struct Records<S: Schema> {
    store: Arc<dyn Store<S>>,
    events: Arc<dyn EventLog>,
    group: String,
    settings: ConsumerSettings,
    effect: Effect<S>,
    /// The producer of dead letters, made on first use and again after it failed.
    dead_letters: tokio::sync::Mutex<Option<Arc<dyn Producer>>>,
    /// Failed deliveries per event id, for `attempts_max`.
    attempts: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
}

impl<S: Schema> Records<S> {
    /// Applies `r`'s effect once, or dead-letters it; `Err`: the batch must be read again
    /// from `r`.
    async fn process(&self, r: &ConsumedRecord) -> anyhow::Result<()> {
        // A record that carries trace context is handled as a span of its trace.
        let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        match crate::trace::TraceContext::from_headers(headers) {
            Some(caller) => {
                let name = format!("consume {}", r.topic);
                crate::trace::span(&name, Some(caller), self.process_in_span(r), |r| r.is_ok())
                    .await
            }
            None => self.process_in_span(r).await,
        }
    }

    async fn process_in_span(&self, r: &ConsumedRecord) -> anyhow::Result<()> {
        let (store, group, settings) = (&self.store, &self.group, &self.settings);
        let applied = if settings.inbox {
            let seen = if settings.lookup_first {
                store.consumed(group, &event_id(r)).await
            } else {
                Ok(false)
            };
            match seen {
                Ok(true) => return Ok(()),
                Ok(false) => apply_once(store, group, r, &self.effect).await,
                Err(e) => Err(EffectError::Retry(e.into())),
            }
        } else {
            apply_without_inbox(store, r, &self.effect).await
        };
        let reason = match applied {
            Ok(()) => {
                if let Ok(mut attempts) = self.attempts.lock() {
                    if !attempts.is_empty() {
                        attempts.remove(&event_id(r));
                    }
                }
                return Ok(());
            }
            Err(EffectError::Poison(reason)) => reason,
            Err(EffectError::Retry(e)) => return Err(e),
            Err(EffectError::Failed(e)) => {
                let id = event_id(r);
                let given_up = {
                    let mut attempts = self
                        .attempts
                        .lock()
                        .map_err(|_| anyhow::anyhow!("attempt counts poisoned"))?;
                    if attempts.len() >= ATTEMPTS_TRACKED_MAX {
                        attempts.clear();
                    }
                    let n = attempts.entry(id.clone()).or_insert(0);
                    *n += 1;
                    match settings.attempts_max {
                        Some(max) if *n >= max => {
                            let n = *n;
                            attempts.remove(&id);
                            Some(n)
                        }
                        _ => None,
                    }
                };
                match given_up {
                    Some(n) => format!("failed {n} times; last: {e:#}"),
                    None => return Err(e),
                }
            }
        };
        let mut dead_letters = self.dead_letters.lock().await;
        if dead_letters.is_none() {
            *dead_letters = Some(self.events.producer(settings.producer.clone()).await?);
        }
        let p = dead_letters.as_ref().expect("set above");
        if let Err(e) = p.send(dead_letter(r, group, &reason)).await {
            // A new producer next time (this one may be broken for good); the batch is
            // read again, so the letter is at least once.
            *dead_letters = None;
            return Err(e.into());
        }
        tracing::warn!(
            group = %group,
            topic = %r.topic,
            partition = r.partition,
            offset = r.offset,
            %reason,
            "record dead-lettered"
        );
        Ok(())
    }
}

/// Before a batch is read again from where `done` began: commits `done` (the records
/// before the one that failed, each taken effect or dead-lettered), so they are not
/// processed nor dead-lettered again. Returns `failure`, the reason to re-read.
async fn keep_progress(
    consumer: &mut dyn Consumer,
    done: &[ConsumedRecord],
    failure: anyhow::Error,
) -> anyhow::Error {
    if !done.is_empty() {
        if let Err(e) = consumer.commit(done).await {
            tracing::debug!(error = %e, "committing the records before a failure failed");
        }
    }
    failure
}

/// Sets `consumer_lag{group,topic,partition}` from the member's lag (a refusal or a slow
/// answer leaves the last figures). A partition reported before and no longer assigned is
/// set to 0: its new owner reports it now, and a sum over members stays right.
fn report_lag(
    answer: LagAnswer,
    m: &crate::metrics::Registry,
    group: &str,
    reported: &mut Vec<(String, i32)>,
) {
    let gauge = |topic: &str, partition: i32| {
        m.gauge(
            "consumer_lag",
            "Records a consumer group member has still to read, by group, topic and \
             partition (the partition's high watermark minus the member's position).",
            &[
                ("group", group),
                ("topic", topic),
                ("partition", &partition.to_string()),
            ],
        )
    };
    match answer {
        Ok(Ok(lags)) => {
            let now: Vec<(String, i32)> = lags
                .iter()
                .map(|l| (l.topic.clone(), l.partition))
                .collect();
            for (topic, partition) in reported.iter().filter(|p| !now.contains(p)) {
                gauge(topic, *partition).set(0);
            }
            for l in &lags {
                gauge(&l.topic, l.partition).set(l.lag());
            }
            *reported = now;
        }
        Ok(Err(e)) => tracing::debug!(group, error = %e, "lag not known"),
        Err(_) => tracing::debug!(group, "lag not known in time"),
    }
}

/// The dead letter of `record`: the same key, payload and headers, plus why and whence.
pub fn dead_letter(record: &ConsumedRecord, group: &str, reason: &str) -> ProducedRecord {
    let mut headers = record.headers.clone();
    headers.push((DLQ_REASON_HEADER.into(), reason.into()));
    headers.push((
        DLQ_ORIGIN_HEADER.into(),
        format!("{}/{}/{}", record.topic, record.partition, record.offset),
    ));
    headers.push((DLQ_CONSUMER_HEADER.into(), group.into()));
    ProducedRecord {
        topic: crate::topics::dlq(&record.topic),
        key: record.key.clone(),
        payload: record.payload.clone(),
        headers,
    }
}

/// The event id of `record`: its `event-id` header, else its position.
fn event_id(record: &ConsumedRecord) -> String {
    match record.header(EVENT_ID_HEADER) {
        Some(id) => id.to_owned(),
        None => format!("{}-{}-{}", record.topic, record.partition, record.offset),
    }
}

/// Applies `effect` for `record` once: a duplicate delivery is recognised (its inbox mark
/// collides at commit) and skipped.
pub async fn apply_once<S: Schema>(
    store: &Arc<dyn Store<S>>,
    consumer: &str,
    record: &ConsumedRecord,
    effect: &Effect<S>,
) -> Result<(), EffectError> {
    apply(store, record, effect, Some((consumer, &event_id(record)))).await
}

/// Why an effect produced no transaction, carried out of the conflict-retry loop.
enum NoEffect {
    Poison(String),
    Failed(String),
}

/// The effect of `record`, with its inbox mark if `mark` is given, re-run while its
/// transaction conflicts with a concurrent one; a duplicate mark means it took effect before.
async fn apply<S: Schema>(
    store: &Arc<dyn Store<S>>,
    record: &ConsumedRecord,
    effect: &Effect<S>,
    mark: Option<(&str, &str)>,
) -> Result<(), EffectError> {
    let applied = on_conflict("consumer effect", |_| async {
        let tx = match effect(record.clone(), store.clone()).await {
            Ok(Some(tx)) => tx,
            Ok(None) => return Ok(None),
            Err(EffectError::Poison(reason)) => return Ok(Some(NoEffect::Poison(reason))),
            Err(EffectError::Failed(e)) => return Ok(Some(NoEffect::Failed(format!("{e:#}")))),
            Err(EffectError::Retry(e)) => {
                return Err(StoreError::Unavailable(format!("{e:#}")));
            }
        };
        let tx = match mark {
            Some((consumer, event_id)) => tx.consumed(consumer, event_id),
            None => tx,
        };
        match store.commit(tx).await {
            Ok(()) | Err(StoreError::Duplicate { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await;
    match applied {
        Ok(None) => Ok(()),
        Ok(Some(NoEffect::Poison(reason))) => Err(EffectError::Poison(reason)),
        Ok(Some(NoEffect::Failed(failure))) => Err(EffectError::Failed(anyhow::anyhow!(failure))),
        // The store refuses the effect for good (a constraint it breaks): retrying would
        // stop the partition forever, so it is dead-lettered like an undecodable record.
        Err(StoreError::Fatal(reason)) => Err(EffectError::Poison(format!(
            "the store refuses the effect: {reason}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The mutant: the effect without its inbox mark, so a redelivery applies it again.
async fn apply_without_inbox<S: Schema>(
    store: &Arc<dyn Store<S>>,
    record: &ConsumedRecord,
    effect: &Effect<S>,
) -> Result<(), EffectError> {
    apply(store, record, effect, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, offset: i64, key: &str) -> ConsumedRecord {
        ConsumedRecord {
            topic: topic.into(),
            partition,
            offset,
            key: key.into(),
            payload: Vec::new(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_batch_in_lanes_keeps_each_partitions_order_and_loses_no_record() {
        let batch = [
            at("a", 1, 10, "x"),
            at("a", 0, 5, "x"),
            at("a", 1, 11, "y"),
            at("b", 1, 7, "x"),
            at("a", 0, 6, "x"),
            at("a", 1, 12, "x"),
        ];
        assert_eq!(lanes(&batch, Lanes::One), [vec![0, 1, 2, 3, 4, 5]]);
        assert_eq!(
            lanes(&batch, Lanes::ByPartition),
            [vec![1, 4], vec![0, 2, 5], vec![3]]
        );
        assert_eq!(lanes(&[], Lanes::ByPartition), [Vec::<usize>::new()]);
    }

    #[test]
    fn after_a_failure_each_partition_commits_only_up_to_its_first_record_not_done() {
        let batch = [
            at("a", 1, 10, "x"),
            at("a", 0, 5, "x"),
            at("a", 1, 11, "y"),
            at("a", 1, 12, "x"),
            at("a", 0, 6, "z"),
        ];
        // Partition 1 failed at offset 11 (12 came from a second try, say): only 10 is
        // committed; partition 0 is whole.
        let done = [true, true, false, true, true];
        let offsets: Vec<(i32, i64)> = committable(&batch, &done)
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        assert_eq!(offsets, [(1, 10), (0, 5), (0, 6)]);
        assert!(committable(&batch, &[false; 5]).is_empty());
    }

    use crate::{
        ports::ConsumedRecord,
        store::{
            kv::{KvQuery, KvSchema, KvTx},
            MemoryStore,
        },
    };

    fn record(offset: i64, event_id: &str) -> ConsumedRecord {
        ConsumedRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            key: "k".into(),
            payload: b"{}".to_vec(),
            headers: vec![(EVENT_ID_HEADER.into(), event_id.into())],
        }
    }

    /// An effect that counts events per key (read, then write with a version check).
    fn counting_effect() -> Effect<KvSchema> {
        Arc::new(|r: ConsumedRecord, store: Arc<dyn Store<KvSchema>>| {
            Box::pin(async move {
                let current = store.query(get(&r.key)).await?;
                let (version, n) = match current {
                    Some(v) => (Some(v.version), v.value.as_i64().unwrap_or(0)),
                    None => (None, 0),
                };
                Ok(Some(Tx::new().put_at(
                    "counts",
                    &r.key,
                    version,
                    serde_json::json!(n + 1),
                    false,
                )))
            })
        })
    }

    fn get(key: &str) -> KvQuery {
        KvQuery::Get {
            table: "counts".into(),
            key: key.into(),
        }
    }

    fn kv_store() -> Arc<dyn Store<KvSchema>> {
        Arc::new(MemoryStore::<KvSchema>::default())
    }

    async fn count(store: &Arc<dyn Store<KvSchema>>) -> serde_json::Value {
        store
            .query(get("k"))
            .await
            .expect("read")
            .expect("written")
            .value
    }

    #[tokio::test]
    async fn a_redelivered_event_takes_effect_once() {
        let store = kv_store();
        let effect = counting_effect();
        for r in [
            record(0, "e1"),
            record(0, "e1"),
            record(1, "e2"),
            record(0, "e1"),
        ] {
            apply_once(&store, "group", &r, &effect)
                .await
                .unwrap_or_else(|e| panic!("applied or skipped: {e}"));
        }
        assert_eq!(
            count(&store).await,
            serde_json::json!(2),
            "e1 once, e2 once"
        );
    }

    #[tokio::test]
    async fn without_the_inbox_a_redelivery_takes_effect_again() {
        let store = kv_store();
        let effect = counting_effect();
        for r in [record(0, "e1"), record(0, "e1")] {
            apply_without_inbox(&store, &r, &effect)
                .await
                .unwrap_or_else(|e| panic!("applied: {e}"));
        }
        assert_eq!(count(&store).await, serde_json::json!(2));
    }

    #[test]
    fn a_dead_letter_keeps_the_record_and_says_why_and_whence() {
        let r = record(41, "e9");
        let d = dead_letter(&r, "analytics", "payload does not decode");
        assert_eq!(d.topic, "t.dlq");
        assert_eq!(
            (d.key.as_str(), d.payload.as_slice()),
            ("k", b"{}".as_slice())
        );
        let header = |name: &str| {
            d.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(EVENT_ID_HEADER), Some("e9"));
        assert_eq!(header(DLQ_REASON_HEADER), Some("payload does not decode"));
        assert_eq!(header(DLQ_ORIGIN_HEADER), Some("t/0/41"));
        assert_eq!(header(DLQ_CONSUMER_HEADER), Some("analytics"));
    }

    #[tokio::test]
    async fn different_consumers_each_apply_the_event() {
        let store = kv_store();
        let effect = counting_effect();
        for group in ["analytics", "notification"] {
            apply_once(&store, group, &record(0, "e1"), &effect)
                .await
                .unwrap_or_else(|e| panic!("{group}: {e}"));
        }
        assert_eq!(count(&store).await, serde_json::json!(2));
    }

    use crate::ports::{EventLogError, PartitionLag};

    /// A member whose assignment changes between two lag reports.
    struct Reassigned(Vec<Vec<PartitionLag>>);

    #[async_trait::async_trait]
    impl Consumer for Reassigned {
        async fn poll(&mut self, _: Duration) -> Result<Vec<ConsumedRecord>, EventLogError> {
            Ok(Vec::new())
        }
        async fn commit(&mut self, _: &[ConsumedRecord]) -> Result<(), EventLogError> {
            Ok(())
        }
        async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError> {
            Ok(self.0.remove(0))
        }
    }

    #[tokio::test]
    async fn a_partition_taken_away_reports_no_lag_from_its_old_owner() {
        let at = |partition, position, high_watermark| PartitionLag {
            topic: "t".into(),
            partition,
            position,
            high_watermark,
        };
        let mut member = Reassigned(vec![vec![at(0, 3, 10), at(1, 5, 5)], vec![at(1, 5, 9)]]);
        let m = crate::metrics::Registry::new();
        let mut reported = Vec::new();
        let lag = |m: &crate::metrics::Registry, partition: &str| {
            m.gauge(
                "consumer_lag",
                "",
                &[("group", "g"), ("topic", "t"), ("partition", partition)],
            )
            .get()
        };
        report_lag(Ok(member.lag().await), &m, "g", &mut reported);
        assert_eq!((lag(&m, "0"), lag(&m, "1")), (7, 0));
        report_lag(Ok(member.lag().await), &m, "g", &mut reported);
        assert_eq!(
            (lag(&m, "0"), lag(&m, "1")),
            (0, 4),
            "partition 0 went to another member"
        );
    }

    /// A member whose records come from a channel and whose lag query never answers (a
    /// broker that does not reply).
    struct SilentLag(tokio::sync::mpsc::UnboundedReceiver<ConsumedRecord>);

    #[async_trait::async_trait]
    impl Consumer for SilentLag {
        async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, EventLogError> {
            Ok(tokio::time::timeout(timeout, self.0.recv())
                .await
                .ok()
                .flatten()
                .into_iter()
                .collect())
        }
        async fn commit(&mut self, _: &[ConsumedRecord]) -> Result<(), EventLogError> {
            Ok(())
        }
        async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError> {
            std::future::pending().await
        }
        fn lag_query(&mut self) -> Option<crate::ports::LagQuery> {
            Some(Box::pin(std::future::pending()))
        }
    }

    /// Hands out one [`SilentLag`] member.
    struct OneMember(std::sync::Mutex<Option<SilentLag>>);

    #[async_trait::async_trait]
    impl EventLog for OneMember {
        async fn producer(
            &self,
            _: ProducerConfig,
        ) -> Result<Arc<dyn crate::ports::Producer>, EventLogError> {
            Err(EventLogError::Unavailable("no producer here".into()))
        }
        async fn consumer(
            &self,
            _: ConsumerConfig,
            _: &[&str],
        ) -> Result<Box<dyn Consumer>, EventLogError> {
            let member = self.0.lock().expect("lock").take();
            Ok(Box::new(member.ok_or_else(|| {
                EventLogError::Unavailable("one member only".into())
            })?))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lag_query_that_does_not_answer_holds_no_poll_up() {
        let (records, received) = tokio::sync::mpsc::unbounded_channel();
        let store = kv_store();
        let settings = ConsumerSettings {
            consumer: ConsumerConfig::new("g"),
            topics: vec!["t".into()],
            producer: ProducerConfig::default(),
            inbox: true,
            attempts_max: None,
            lookup_first: false,
            lanes: Lanes::One,
            metrics: Some(crate::metrics::Registry::new()),
        };
        let (stop, shutdown) = Shutdown::new();
        let events = Arc::new(OneMember(std::sync::Mutex::new(Some(SilentLag(received)))));
        let consuming = tokio::spawn(run_consumer(
            store.clone(),
            events,
            settings,
            counting_effect(),
            shutdown,
        ));
        let counted = |n: i64| {
            let store = store.clone();
            async move {
                // Polled on the paused clock, which moves only while every task waits.
                while store.query(get("k")).await.ok().flatten().map(|v| v.value)
                    != Some(serde_json::json!(n))
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        records.send(record(0, "e1")).expect("the loop reads");
        counted(1).await;
        // The first batch's lag query now runs and will not answer within LAG_TIMEOUT.
        let sent = tokio::time::Instant::now();
        records.send(record(1, "e2")).expect("the loop reads");
        counted(2).await;
        assert!(
            sent.elapsed() < LAG_TIMEOUT / 5,
            "the second record waited {:?} behind the lag query",
            sent.elapsed()
        );
        stop.trigger();
        consuming.await.expect("the loop ends");
    }
}
