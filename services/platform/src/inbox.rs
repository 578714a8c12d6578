//! The inbox: a consumer loop that applies each event's effect exactly once in effect.
//!
//! Records are read with manual commits; each effect is committed in the service's store in
//! the same transaction as an inbox mark for the record's `event-id`, so a redelivered record
//! (after a crash or rebalance) hits [`StoreError::Duplicate`] and is skipped. Offsets are
//! committed to the event log only after the effect is durable.

use std::{sync::Arc, time::Duration};

use crate::{
    outbox::EVENT_ID_HEADER,
    ports::{ConsumedRecord, Consumer, ConsumerConfig, EventLog, Store, StoreError, Tx},
    retry::RetryPolicy,
    Shutdown,
};

/// Turns one record into the transaction that applies its effect (without the inbox mark,
/// which [`run_consumer`] adds). `None`: the record needs no effect.
pub type Effect = Arc<dyn Fn(&ConsumedRecord) -> anyhow::Result<Option<Tx>> + Send + Sync>;

/// Consumes `topics` as `config.group_id` until shutdown, applying `effect` once per event.
pub async fn run_consumer(
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    config: ConsumerConfig,
    topics: Vec<String>,
    effect: Effect,
    shutdown: Shutdown,
) {
    let backoff = RetryPolicy::forever(Duration::from_millis(100), Duration::from_secs(2));
    let mut failures = 0u32;
    let mut consumer: Option<Box<dyn Consumer>> = None;
    while !shutdown.is_requested() {
        let result = async {
            if consumer.is_none() {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer = Some(events.consumer(config.clone(), &topics).await?);
            }
            let c = consumer.as_mut().expect("set above");
            let records = c.poll(Duration::from_millis(500)).await?;
            for r in &records {
                apply_once(&*store, &config.group_id, r, &effect).await?;
            }
            if !records.is_empty() {
                c.commit(&records).await?;
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, group = %config.group_id, "consumer round failed");
                // A fenced or broken consumer re-joins; uncommitted records are re-read.
                consumer = None;
                tokio::select! {
                biased;
                        _ = tokio::time::sleep(backoff.delay(failures)) => {}
                        _ = shutdown.wait() => return,
                    }
            }
        }
    }
}

/// Applies `effect` for `record` once: a duplicate delivery is recognised and skipped.
pub async fn apply_once(
    store: &dyn Store,
    consumer: &str,
    record: &ConsumedRecord,
    effect: &Effect,
) -> anyhow::Result<()> {
    let event_id = match record.header(EVENT_ID_HEADER) {
        Some(id) => id.to_owned(),
        None => format!("{}-{}-{}", record.topic, record.partition, record.offset),
    };
    let Some(tx) = effect(record)? else {
        return Ok(());
    };
    match store.commit(tx.consumed(consumer, &event_id)).await {
        Ok(()) | Err(StoreError::Duplicate { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ports::ConsumedRecord, store::MemoryStore};

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

    /// An effect that counts events in a record per key.
    fn counting_effect(store: MemoryStore) -> Effect {
        Arc::new(move |r: &ConsumedRecord| {
            let n = store
                .state
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .get("counts", &r.key)
                .map_or(0, |v| v.body.as_i64().unwrap_or(0));
            Ok(Some(Tx::new().put(
                "counts",
                &r.key,
                serde_json::json!(n + 1),
                false,
            )))
        })
    }

    #[tokio::test]
    async fn a_redelivered_event_takes_effect_once() {
        let store = MemoryStore::default();
        let effect = counting_effect(store.clone());
        for r in [
            record(0, "e1"),
            record(0, "e1"),
            record(1, "e2"),
            record(0, "e1"),
        ] {
            apply_once(&store, "group", &r, &effect)
                .await
                .expect("applied or skipped");
        }
        let count = store
            .state
            .lock()
            .expect("lock")
            .get("counts", "k")
            .expect("written");
        assert_eq!(count.body, serde_json::json!(2), "e1 once, e2 once");
    }

    #[tokio::test]
    async fn different_consumers_each_apply_the_event() {
        let store = MemoryStore::default();
        let effect = counting_effect(store.clone());
        apply_once(&store, "analytics", &record(0, "e1"), &effect)
            .await
            .expect("a");
        apply_once(&store, "notification", &record(0, "e1"), &effect)
            .await
            .expect("b");
        let count = store
            .state
            .lock()
            .expect("lock")
            .get("counts", "k")
            .expect("written");
        assert_eq!(count.body, serde_json::json!(2));
    }
}
