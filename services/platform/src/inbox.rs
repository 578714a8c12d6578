//! The inbox: a consumer loop that applies each event's effect exactly once in effect.
//!
//! Records are read with manual commits; each effect is committed in the service's store in
//! the same transaction as an inbox mark for the record's `event-id`, so a redelivered record
//! (after a crash or rebalance) hits [`StoreError::Duplicate`] and is skipped. Offsets are
//! committed to the event log only after the effect is durable.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;

use crate::{
    outbox::EVENT_ID_HEADER,
    ports::{ConsumedRecord, Consumer, ConsumerConfig, EventLog, Store, StoreError, Tx},
    retry::RetryPolicy,
    Shutdown,
};

/// Turns one record into the transaction that applies its effect (without the inbox mark,
/// which [`apply_once`] adds), reading the store as it needs. `None`: no effect. Called
/// again when the transaction conflicts with a concurrent one.
pub type Effect = Arc<
    dyn Fn(ConsumedRecord, Arc<dyn Store>) -> BoxFuture<'static, anyhow::Result<Option<Tx>>>
        + Send
        + Sync,
>;

/// Attempts of one effect whose transaction keeps conflicting.
const EFFECT_ATTEMPTS_MAX: u32 = 16;

/// Consumes `topics` as `config.group_id` until shutdown, applying `effect` once per event
/// (`inbox` false is the mutant that applies it once per delivery).
pub async fn run_consumer(
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    config: ConsumerConfig,
    topics: Vec<String>,
    effect: Effect,
    inbox: bool,
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
                if inbox {
                    apply_once(&store, &config.group_id, r, &effect).await?;
                } else {
                    apply_without_inbox(&store, r, &effect).await?;
                }
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

/// The event id of `record`: its `event-id` header, else its position.
fn event_id(record: &ConsumedRecord) -> String {
    match record.header(EVENT_ID_HEADER) {
        Some(id) => id.to_owned(),
        None => format!("{}-{}-{}", record.topic, record.partition, record.offset),
    }
}

/// Applies `effect` for `record` once: a duplicate delivery is recognised and skipped.
pub async fn apply_once(
    store: &Arc<dyn Store>,
    consumer: &str,
    record: &ConsumedRecord,
    effect: &Effect,
) -> anyhow::Result<()> {
    let event_id = event_id(record);
    for _ in 0..EFFECT_ATTEMPTS_MAX {
        let Some(tx) = effect(record.clone(), store.clone()).await? else {
            return Ok(());
        };
        match store.commit(tx.consumed(consumer, &event_id)).await {
            Ok(()) | Err(StoreError::Duplicate { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("effect of {event_id} kept conflicting")
}

/// The mutant: the effect without its inbox mark, so a redelivery applies it again.
async fn apply_without_inbox(
    store: &Arc<dyn Store>,
    record: &ConsumedRecord,
    effect: &Effect,
) -> anyhow::Result<()> {
    for _ in 0..EFFECT_ATTEMPTS_MAX {
        let Some(tx) = effect(record.clone(), store.clone()).await? else {
            return Ok(());
        };
        match store.commit(tx).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("effect kept conflicting")
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

    /// An effect that counts events per key (read, then write with a version check).
    fn counting_effect() -> Effect {
        Arc::new(|r: ConsumedRecord, store: Arc<dyn Store>| {
            Box::pin(async move {
                let (version, n) = match store.get("counts", &r.key).await? {
                    Some(v) => (Some(v.version), v.body.as_i64().unwrap_or(0)),
                    None => (None, 0),
                };
                let tx = Tx::new().expect("counts", &r.key, version);
                Ok(Some(tx.put(
                    "counts",
                    &r.key,
                    serde_json::json!(n + 1),
                    false,
                )))
            })
        })
    }

    async fn count(store: &Arc<dyn Store>) -> serde_json::Value {
        store
            .get("counts", "k")
            .await
            .expect("read")
            .expect("written")
            .body
    }

    #[tokio::test]
    async fn a_redelivered_event_takes_effect_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let effect = counting_effect();
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
        assert_eq!(
            count(&store).await,
            serde_json::json!(2),
            "e1 once, e2 once"
        );
    }

    #[tokio::test]
    async fn without_the_inbox_a_redelivery_takes_effect_again() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let effect = counting_effect();
        for r in [record(0, "e1"), record(0, "e1")] {
            apply_without_inbox(&store, &r, &effect)
                .await
                .expect("applied");
        }
        assert_eq!(count(&store).await, serde_json::json!(2));
    }

    #[tokio::test]
    async fn different_consumers_each_apply_the_event() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let effect = counting_effect();
        apply_once(&store, "analytics", &record(0, "e1"), &effect)
            .await
            .expect("a");
        apply_once(&store, "notification", &record(0, "e1"), &effect)
            .await
            .expect("b");
        assert_eq!(count(&store).await, serde_json::json!(2));
    }
}
