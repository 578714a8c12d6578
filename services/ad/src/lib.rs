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
use std::sync::Arc;

use platform::{
    inbox::Effect,
    outbox::OutboxSignal,
    ports::{ConsumedRecord, OutboxMessage, Store, Tx, Versioned},
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
    /// The consumer group of `moderation.results` (normally [`MODERATION_GROUP`]).
    pub moderation_group: String,
    /// Kafka `client.rack` of this instance.
    pub client_rack: Option<String>,
}

/// The consumer group of `moderation.results`.
pub const MODERATION_GROUP: &str = "ad-moderation";

/// A BAN of an ad makes it BANNED (a new version, on `ad.changed` like every change), in one
/// transaction with the result's inbox mark. A deleted or banned ad stays as it is.
fn moderation_effect(ignore_bans: bool) -> Effect<AdSchema> {
    Arc::new(
        move |record: ConsumedRecord, store: Arc<dyn Store<AdSchema>>| {
            Box::pin(async move {
                let Some(result) =
                    moderation::ModerationResult::ban_of(&record, "AD", ignore_bans)?
                else {
                    return Ok(None);
                };
                let Some(Versioned { version, value }) = store
                    .query(AdQuery::Ad {
                        ad_id: result.target_id.clone(),
                    })
                    .await?
                else {
                    return Ok(None);
                };
                if !matches!(value.status.as_str(), "ACTIVE" | "HIDDEN") {
                    return Ok(None);
                }
                let banned = Ad {
                    status: "BANNED".into(),
                    updated_ms: result.decided_ms.max(value.updated_ms),
                    ..value
                };
                let event = changed_event(&banned, version + 1);
                Ok(Some(
                    Tx::new()
                        .write(AdWrite::Update {
                            ad: banned,
                            version,
                        })
                        .emit(event),
                ))
            })
        },
    )
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
    let relay = infra.spawn_relay(outbox.clone(), shutdown.clone());
    let moderation = infra.spawn_consumer(
        infra.consumer_settings(
            &config.moderation_group,
            config.client_rack.clone(),
            &[platform::topics::MODERATION_RESULTS],
        ),
        moderation_effect(infra.mutants.ban_not_enforced),
        shutdown.clone(),
    );
    tracing::info!(listen = %config.listen, "ad service up");
    let tls = infra.tls.clone();
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                infra.metrics.clone(),
            ))
            .add_service(AdServiceServer::new(api::AdApi { infra, outbox })),
        config.listen,
        tls,
        shutdown.clone(),
    )
    .await?;
    let _ = relay.await;
    let _ = moderation.await;
    Ok(())
}
