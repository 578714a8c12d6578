//! The search service: a consumer group on `ad.changed` that keeps a full-text index of the
//! newest version of every ad (each update commits with its inbox mark, and an older version
//! never overwrites a newer one), and a gRPC `Search` over the ACTIVE ones: words
//! (PostgreSQL `websearch_to_tsquery`, Russian and English), category, region, price range,
//! four sorts, keyset pagination with opaque cursors.

mod api;
pub mod store;

use std::{net::SocketAddr, sync::Arc};

use contracts::search::search_service_server::SearchServiceServer;
use platform::{
    inbox::{Effect, EffectError},
    ports::{ConsumedRecord, Store, Tx},
    Infra, Shutdown,
};

pub use api::{decode_cursor, encode_cursor, DEFAULT_LIMIT};
pub use store::{Doc, SearchAnswer, SearchModel, SearchQuery, SearchSchema, SearchWrite};

/// The consumer group.
pub const GROUP: &str = "search";

/// Search settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// The consumer group (normally [`GROUP`]; tests side by side use their own).
    pub group_id: String,
    /// Kafka `client.rack` of this instance.
    pub client_rack: Option<String>,
}

/// The index document of an `ad.changed` event.
pub fn doc_of(e: &ad::AdChanged) -> Doc {
    let a = &e.ad;
    Doc {
        ad_id: a.ad_id.clone(),
        version: e.version,
        owner_id: a.owner_id.clone(),
        title: a.title.clone(),
        description: a.description.clone(),
        price_minor: a.price_minor,
        currency: a.currency.clone(),
        category: a.category.clone(),
        region: a.region.clone(),
        status: a.status.clone(),
        created_ms: a.created_ms,
    }
}

fn effect() -> Effect<SearchSchema> {
    Arc::new(
        |record: ConsumedRecord, _store: Arc<dyn Store<SearchSchema>>| {
            Box::pin(async move {
                let event: ad::AdChanged = serde_json::from_slice(&record.payload)
                    .map_err(|e| EffectError::Poison(format!("ad event does not decode: {e}")))?;
                Ok(Some(Tx::new().write(SearchWrite::Upsert(doc_of(&event)))))
            })
        },
    )
}

/// Runs the search service (its consumer and its gRPC API) until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<SearchSchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let consuming = infra.spawn_consumer(
        infra.consumer_settings(
            &config.group_id,
            config.client_rack.clone(),
            &[ad::AD_CHANGED_TOPIC],
        ),
        effect(),
        shutdown.clone(),
    );
    tracing::info!(listen = %config.listen, "search service up, consuming {}", ad::AD_CHANGED_TOPIC);
    let tls = infra.tls.clone();
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                infra.metrics.clone(),
            ))
            .add_service(SearchServiceServer::new(api::SearchApi {
                store: infra.store.clone(),
                mutants: infra.mutants,
            })),
        config.listen,
        tls,
        shutdown.clone(),
    )
    .await?;
    let _ = consuming.await;
    Ok(())
}
