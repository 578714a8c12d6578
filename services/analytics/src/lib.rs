//! The analytics service: a consumer group on `order.status.changed` that keeps a mart of
//! orders per status and captured revenue, exactly once in effect (each event's increment
//! commits with its inbox mark; offsets are committed after).

use std::{collections::BTreeMap, sync::Arc};

use platform::{
    inbox::{run_consumer, Effect},
    ports::{ConsumedRecord, ConsumerConfig, Store, Tx},
    Infra, Shutdown,
};
use serde::Deserialize;

/// The consumer group.
pub const GROUP: &str = "analytics";
/// The topic it reads.
pub const TOPIC: &str = "order.status.changed";
/// The mart's table: `status:<STATUS>` → count, `revenue:<CURRENCY>` → minor units of paid
/// orders.
pub const MART: &str = "mart";

/// Analytics settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The consumer group (normally [`GROUP`]; tests running side by side use their own).
    pub group_id: String,
    /// Kafka `client.rack` of this instance.
    pub client_rack: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    status: String,
    amount_minor: i64,
    currency: String,
}

/// The mart keys one event increments, and by how much.
fn increments(e: &Event) -> Vec<(String, i64)> {
    let mut out = vec![(format!("status:{}", e.status), 1)];
    if e.status == "PAID" {
        out.push((format!("revenue:{}", e.currency), e.amount_minor));
    }
    out
}

fn effect() -> Effect {
    Arc::new(|record: ConsumedRecord, store: Arc<dyn Store>| {
        Box::pin(async move {
            let event: Event = match serde_json::from_slice(&record.payload) {
                Ok(e) => e,
                Err(e) => {
                    // A record we cannot read is skipped (and logged), not retried forever.
                    tracing::error!(offset = record.offset, error = %e, "undecodable order event");
                    return Ok(None);
                }
            };
            let mut tx = Tx::new();
            for (key, by) in increments(&event) {
                let (version, n) = match store.get(MART, &key).await? {
                    Some(v) => (Some(v.version), v.body.as_i64().unwrap_or(0)),
                    None => (None, 0),
                };
                tx = tx.expect(MART, &key, version).put(
                    MART,
                    &key,
                    serde_json::json!(n + by),
                    false,
                );
            }
            Ok(Some(tx))
        })
    })
}

/// Reads the mart from a store snapshot's records (for checkers and the API).
pub fn mart(records: &[(String, serde_json::Value)]) -> BTreeMap<String, i64> {
    records
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
        .collect()
}

/// Runs the analytics consumer until `shutdown`.
pub async fn run(config: Config, infra: Infra, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut consumer = ConsumerConfig::new(config.group_id);
    consumer.client_rack = config.client_rack;
    // Mutant: commit offsets at poll time, before the effect is durable.
    consumer.enable_auto_commit = infra.mutants.auto_commit_before_processing;
    let inbox = !infra.mutants.consumer_without_inbox;
    tracing::info!("analytics consuming {TOPIC}");
    run_consumer(
        infra.store,
        infra.events,
        consumer,
        vec![TOPIC.into()],
        effect(),
        inbox,
        shutdown,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_events_add_revenue_and_every_event_counts_its_status() {
        let paid = Event {
            status: "PAID".into(),
            amount_minor: 500,
            currency: "RUB".into(),
        };
        assert_eq!(
            increments(&paid),
            vec![("status:PAID".into(), 1), ("revenue:RUB".into(), 500)]
        );
        let created = Event {
            status: "CREATED".into(),
            amount_minor: 500,
            currency: "RUB".into(),
        };
        assert_eq!(increments(&created), vec![("status:CREATED".into(), 1)]);
    }
}
