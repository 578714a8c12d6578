//! The payment service.
//!
//! `Charge` answers "accepted, in progress" at once and records a payment per idempotency key
//! (a retried call with the same key returns the same payment). A worker then charges the PSP
//! over HTTP with the payment's key as the PSP's `Idempotency-Key`, so a retry after a PSP
//! timeout learns the outcome instead of charging again. `Refund` refunds every captured
//! charge of an order — or, for a charge still in flight, refunds it once it is captured.

mod api;
mod callback;
pub mod store;
mod worker;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use contracts::payment::payment_service_server::PaymentServiceServer;
use platform::{changes::Changes, claims::Liveness, Infra, Shutdown};
use tokio::sync::Notify;

pub use store::{Payment, PaymentSchema, PaymentStatus};

/// Payment service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Base URL of the PSP, e.g. `http://127.0.0.1:8081`.
    pub psp_url: String,
    /// Bound on one PSP call.
    pub psp_timeout: Duration,
    /// Poll interval of the worker when not woken.
    pub worker_poll: Duration,
    /// Where the PSP's webhook is served (HTTP), if anywhere.
    pub callback_listen: Option<SocketAddr>,
    /// The webhook URL handed to the PSP with each charge.
    pub callback_url: Option<String>,
}

/// Shared state of the gRPC handlers and the worker.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub infra: Infra<PaymentSchema>,
    pub config: Config,
    /// Wakes the worker right after a payment needs PSP work.
    pub work: Arc<Notify>,
    /// This instance's liveness lease: the payments it works on are claimed under it.
    pub liveness: Arc<Liveness>,
    /// Feeds WatchPayment streams: every commit publishes the order id it changed.
    pub changes: Changes,
    /// PSP calls that timed out in a row, by payment key: the next call waits longer.
    pub late: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>,
    /// The PSP's circuit breaker, shared by every call to it.
    pub psp: Arc<platform::breaker::Breaker>,
}

/// Runs the payment service until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<PaymentSchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let liveness = Liveness::of(&infra);
    let ctx = Ctx {
        infra,
        config: config.clone(),
        work: Arc::new(Notify::new()),
        liveness: liveness.clone(),
        changes: Changes::default(),
        late: Arc::default(),
        psp: platform::breaker::Breaker::shared("psp"),
    };
    ctx.infra.metrics.watch_breaker(ctx.psp.clone());
    let keep_alive = tokio::spawn(liveness.keep(shutdown.clone()));
    let worker = tokio::spawn(worker::run(ctx.clone(), shutdown.clone()));
    if let Some(addr) = config.callback_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::spawn(platform::http::serve(
            listener,
            platform::http::observed(callback::router(ctx.clone()), ctx.infra.metrics.clone()),
            shutdown.clone(),
        ));
    }
    let tls = ctx.infra.tls.clone();
    let server = platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                ctx.infra.metrics.clone(),
            ))
            .add_service(PaymentServiceServer::new(api::PaymentApi { ctx })),
        config.listen,
        tls,
        shutdown.clone(),
    );
    tracing::info!(listen = %config.listen, "payment service up");
    server.await?;
    let _ = worker.await;
    let _ = keep_alive.await;
    Ok(())
}
