//! The delivery service: a gRPC adapter to the external courier API.
//!
//! `CreateShipment` records a shipment per order (retries with any key return it); a worker
//! books it with the courier (idempotency key per order, so a retried booking never books
//! twice), then follows its stages until a final one. `WatchShipment` streams the stages.

mod api;
pub mod store;
mod worker;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use contracts::delivery::delivery_service_server::DeliveryServiceServer;
use platform::{changes::Changes, claims::Liveness, Infra, Shutdown};
use tokio::sync::Notify;

/// Delivery service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Base URL of the courier API.
    pub courier_url: String,
    /// Bound on one courier call.
    pub courier_timeout: Duration,
    /// How often active shipments are polled at the courier.
    pub worker_poll: Duration,
}

pub use store::{DeliveryQuery, DeliverySchema, DeliveryWrite, Shipment, FINAL_STAGES};

/// Shared state of the gRPC handlers and the worker.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub infra: Infra<DeliverySchema>,
    pub config: Config,
    /// Wakes the worker right after a shipment needs courier work.
    pub work: Arc<Notify>,
    /// This instance's liveness lease: the shipments it works on are claimed under it.
    pub liveness: Arc<Liveness>,
    /// Feeds WatchShipment streams: every commit publishes the order id it changed.
    pub changes: Changes,
}

/// Runs the delivery service until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<DeliverySchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let liveness = Liveness::of(&infra);
    let ctx = Ctx {
        infra,
        config: config.clone(),
        work: Arc::new(Notify::new()),
        liveness: liveness.clone(),
        changes: Changes::default(),
    };
    let keep_alive = tokio::spawn(liveness.keep(shutdown.clone()));
    let worker = tokio::spawn(worker::run(ctx.clone(), shutdown.clone()));
    tracing::info!(listen = %config.listen, "delivery service up");
    let tls = ctx.infra.tls.clone();
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                ctx.infra.metrics.clone(),
            ))
            .add_service(DeliveryServiceServer::new(api::DeliveryApi { ctx })),
        config.listen,
        tls,
        shutdown.clone(),
    )
    .await?;
    let _ = worker.await;
    let _ = keep_alive.await;
    Ok(())
}
