//! The ad service: classified ads over gRPC (the gateway is their REST face).
//!
//! Every change commits with its `ad.changed` event (the ad's whole new state and version,
//! key = ad id) in one transaction, and the platform's relay publishes it, so the search
//! index and caches downstream see every version in order. Edits are optimistic: each names
//! the version it read, and only the owner edits. A create carries an idempotency key, so a
//! retried create returns the ad it made.

mod api;
pub mod store;

use std::net::SocketAddr;

use contracts::ad::ad_service_server::AdServiceServer;
use platform::{
    outbox::{run_relay, OutboxSignal, RelayConfig},
    ports::OutboxMessage,
    Infra, Shutdown,
};
use serde::{Deserialize, Serialize};

pub use store::{Ad, AdModel, AdQuery, AdSchema, AdWrite};

/// Topic of ad changes (key = ad id).
pub const AD_CHANGED_TOPIC: &str = platform::topics::AD_CHANGED;

/// Ad service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
}

/// The payload of an `ad.changed` record: the ad as it is after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdChanged {
    /// `<ad id>:<version>`: consumers deduplicate on it.
    pub event_id: String,
    pub version: i64,
    pub ad: Ad,
}

/// The outbox message of `ad` at `version`.
pub fn changed_event(ad: &Ad, version: i64) -> OutboxMessage {
    let event = AdChanged {
        event_id: format!("{}:{version}", ad.ad_id),
        version,
        ad: ad.clone(),
    };
    OutboxMessage {
        event_id: event.event_id.clone(),
        topic: AD_CHANGED_TOPIC.into(),
        key: ad.ad_id.clone(),
        payload: serde_json::to_value(&event).unwrap_or_default(),
        headers: vec![],
    }
}

/// Wall-clock milliseconds (the simulation's clock under madsim).
pub(crate) fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// Runs the ad service until `shutdown`.
pub async fn run(config: Config, infra: Infra<AdSchema>, shutdown: Shutdown) -> anyhow::Result<()> {
    let outbox = OutboxSignal::default();
    let relay = tokio::spawn(run_relay(
        infra.store.clone(),
        infra.events.clone(),
        infra.producer.clone(),
        RelayConfig {
            without_lease: infra.mutants.work_without_claims,
            ..RelayConfig::default()
        },
        infra.instance.clone(),
        outbox.clone(),
        shutdown.clone(),
    ));
    tracing::info!(listen = %config.listen, "ad service up");
    tonic::transport::Server::builder()
        .add_service(AdServiceServer::new(api::AdApi { infra, outbox }))
        .serve_with_shutdown(config.listen, shutdown.clone().into_wait())
        .await?;
    let _ = relay.await;
    Ok(())
}
