//! The order service: creates orders and drives each one through the saga
//! CREATED → PAYMENT_PENDING → PAID → SHIPPING → SHIPPED → DELIVERED, with compensations
//! (payment declined or timed out → PAYMENT_FAILED → CANCELLED; shipment failed →
//! DELIVERY_FAILED → REFUNDING → CANCELLED). Every transition commits together with its
//! `order.status.changed` outbox row; the outbox relay publishes them.

mod api;
pub mod domain;
mod saga;
mod transition;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use contracts::order::order_service_server::OrderServiceServer;
use platform::{
    grpc::LazyChannel,
    outbox::{run_relay, OutboxSignal, RelayConfig},
    Infra, Shutdown,
};

pub use domain::{Order, OrderStatus, StatusChanged, ORDER_STATUS_PARTITIONS, ORDER_STATUS_TOPIC};

/// Order service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// gRPC URL of the payment service.
    pub payment_url: String,
    /// gRPC URL of the delivery service.
    pub delivery_url: String,
    /// Time an order may wait for its payment outcome before it is compensated.
    pub payment_step_timeout: Duration,
    /// Time an order may wait for its shipment before it is compensated.
    pub delivery_step_timeout: Duration,
    /// How often unfinished orders are looked up (recovery after a crash).
    pub recovery_interval: Duration,
    /// Delivery address used for shipments (the marketplace has no address book yet).
    pub default_address: String,
}

impl Config {
    /// Sensible timeouts around `listen` and the peers' URLs.
    pub fn new(listen: SocketAddr, payment_url: String, delivery_url: String) -> Self {
        Config {
            listen,
            payment_url,
            delivery_url,
            payment_step_timeout: Duration::from_secs(30),
            delivery_step_timeout: Duration::from_secs(60),
            recovery_interval: Duration::from_secs(2),
            default_address: "pickup point 1".into(),
        }
    }
}

/// Shared state of the API, the saga drivers and the relay.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub infra: Infra,
    pub config: Config,
    pub payment: Arc<LazyChannel>,
    pub delivery: Arc<LazyChannel>,
    /// Wakes the outbox relay after a transition.
    pub outbox: OutboxSignal,
    /// Orders whose saga driver runs in this process, so recovery starts no second one.
    pub running: Arc<Mutex<BTreeSet<String>>>,
    pub shutdown: Shutdown,
}

/// Runs the order service until `shutdown`.
pub async fn run(config: Config, infra: Infra, shutdown: Shutdown) -> anyhow::Result<()> {
    let ctx = Ctx {
        payment: Arc::new(LazyChannel::new(&config.payment_url)?),
        delivery: Arc::new(LazyChannel::new(&config.delivery_url)?),
        infra: infra.clone(),
        config: config.clone(),
        outbox: OutboxSignal::default(),
        running: Arc::default(),
        shutdown: shutdown.clone(),
    };
    let relay = tokio::spawn(run_relay(
        infra.store.clone(),
        infra.events.clone(),
        infra.producer.clone(),
        RelayConfig::default(),
        ctx.outbox.clone(),
        shutdown.clone(),
    ));
    let recovery = tokio::spawn(saga::recover(ctx.clone()));
    tracing::info!(listen = %config.listen, "order service up");
    tonic::transport::Server::builder()
        .add_service(OrderServiceServer::new(api::OrderApi { ctx }))
        .serve_with_shutdown(config.listen, shutdown.clone().into_wait())
        .await?;
    let _ = relay.await;
    let _ = recovery.await;
    Ok(())
}
