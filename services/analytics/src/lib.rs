//! The analytics service: a consumer group on `order.status.changed` that keeps a mart of
//! orders per status and captured revenue, exactly once in effect (each event's increment
//! commits with its inbox mark; offsets are committed after).

pub mod store;

use std::sync::Arc;

use platform::{
    inbox::{run_consumer, Effect, EffectError},
    ports::{ConsumedRecord, Store, Tx},
    Infra, Shutdown,
};
use serde::Deserialize;

pub use store::{MartAnswer, MartQuery, MartSchema, MartWrite};

/// The consumer group.
pub const GROUP: &str = "analytics";
/// The topic it reads.
pub const TOPIC: &str = platform::topics::ORDER_STATUS_CHANGED;

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

fn effect() -> Effect<MartSchema> {
    Arc::new(
        |record: ConsumedRecord, _store: Arc<dyn Store<MartSchema>>| {
            Box::pin(async move {
                let event: Event = serde_json::from_slice(&record.payload).map_err(|e| {
                    EffectError::Poison(format!("order event does not decode: {e}"))
                })?;
                let tx = increments(&event)
                    .into_iter()
                    .fold(Tx::new(), |tx, (key, by)| {
                        tx.write(MartWrite::Add { key, by })
                    });
                Ok(Some(tx))
            })
        },
    )
}

/// Runs the analytics consumer until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<MartSchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let settings = infra.consumer_settings(&config.group_id, config.client_rack, &[TOPIC]);
    tracing::info!("analytics consuming {TOPIC}");
    run_consumer(infra.store, infra.events, settings, effect(), shutdown).await;
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
