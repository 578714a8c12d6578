//! The order service: creates orders and drives each one through the saga
//! CREATED → PAYMENT_PENDING → PAID → SHIPPING → SHIPPED → DELIVERED, with compensations
//! (payment declined or timed out → PAYMENT_FAILED → CANCELLED once no money is held;
//! shipment failed → DELIVERY_FAILED → REFUNDING → CANCELLED; delivery deadline passed →
//! CANCELLING_DELIVERY → the courier's verdict: DELIVERED or DELIVERY_FAILED). Every
//! transition commits together with its
//! `order.status.changed` outbox row; the outbox relay publishes them.

mod admission;
mod api;

pub use admission::{Limits, RETRY_AFTER_METADATA};
pub mod domain;
mod saga;
pub mod store;
mod transition;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use contracts::order::order_service_server::OrderServiceServer;
use platform::{
    claims::Liveness,
    grpc::LazyChannel,
    outbox::OutboxSignal,
    shutdown::{Gate, DRAIN_MAX},
    Infra, Shutdown,
};
use tokio::sync::Notify;

pub use domain::{Order, OrderStatus, StatusChanged, ORDER_STATUS_PARTITIONS, ORDER_STATUS_TOPIC};
pub use store::{OrderModel, OrderQuery, OrderSchema, OrderWrite};
pub use transition::DRIVER_HEADER;

/// Order service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// gRPC URL of the payment service.
    pub payment_url: String,
    /// gRPC URL of the delivery service.
    pub delivery_url: String,
    /// gRPC URL of the notification service, which tells the buyer (empty: nobody is told).
    pub notification_url: String,
    /// Time an order may wait for its payment outcome before it is compensated.
    pub payment_step_timeout: Duration,
    /// Time an order may wait for its shipment before it is compensated.
    pub delivery_step_timeout: Duration,
    /// How often unfinished orders are looked up (recovery after a crash).
    pub recovery_interval: Duration,
    /// Delivery address used for shipments (the marketplace has no address book yet).
    pub default_address: String,
    /// When new orders are refused (see `admission.rs`).
    pub admission: Limits,
}

impl Config {
    /// Sensible timeouts around `listen` and the peers' URLs.
    pub fn new(listen: SocketAddr, payment_url: String, delivery_url: String) -> Self {
        Config {
            listen,
            payment_url,
            delivery_url,
            notification_url: String::new(),
            payment_step_timeout: Duration::from_secs(30),
            delivery_step_timeout: Duration::from_secs(60),
            recovery_interval: Duration::from_secs(2),
            default_address: "pickup point 1".into(),
            admission: Limits::default(),
        }
    }
}

/// Shared state of the API, the saga drivers and the relay.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub infra: Infra<OrderSchema>,
    pub config: Config,
    pub payment: Arc<LazyChannel>,
    pub delivery: Arc<LazyChannel>,
    /// `None`: no notification service configured.
    pub notification: Option<Arc<LazyChannel>>,
    /// Wakes the outbox relay after a transition.
    pub outbox: OutboxSignal,
    /// The saga drivers running in this instance, by order id, so a claim round starts no
    /// second one and stops those whose claim passed to another instance.
    pub drivers: Arc<Mutex<BTreeMap<String, saga::Driver>>>,
    /// This instance's liveness lease: its claims on orders last while it runs.
    pub liveness: Arc<Liveness>,
    /// Wakes the claim round right after an order is created.
    pub claim_wake: Arc<Notify>,
    /// Every running saga driver holds a pass: a shutdown waits for their current steps.
    pub drivers_gate: Gate,
    /// Refuses new orders beyond what the service can finish.
    pub admission: Arc<admission::Admission>,
    pub shutdown: Shutdown,
}

/// Runs the order service until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<OrderSchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let ctx = Ctx {
        payment: Arc::new(
            LazyChannel::new(&config.payment_url)?
                .secured(infra.tls.clone())
                .observed(&infra.metrics, "payment"),
        ),
        delivery: Arc::new(
            LazyChannel::new(&config.delivery_url)?
                .secured(infra.tls.clone())
                .observed(&infra.metrics, "delivery"),
        ),
        notification: if config.notification_url.is_empty() {
            None
        } else {
            Some(Arc::new(
                LazyChannel::new(&config.notification_url)?
                    .secured(infra.tls.clone())
                    .observed(&infra.metrics, "notification"),
            ))
        },
        infra: infra.clone(),
        config: config.clone(),
        outbox: OutboxSignal::default(),
        drivers: Arc::default(),
        liveness: Liveness::of(&infra),
        claim_wake: Arc::default(),
        drivers_gate: Gate::default(),
        admission: Arc::new(admission::Admission::new(config.admission)),
        shutdown: shutdown.clone(),
    };
    let liveness = tokio::spawn(ctx.liveness.clone().keep(shutdown.clone()));
    let relay = infra.spawn_relay(ctx.outbox.clone(), shutdown.clone());
    let recovery = tokio::spawn(saga::recover(ctx.clone()));
    tracing::info!(listen = %config.listen, "order service up");
    let tls = infra.tls.clone();
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                infra.metrics.clone(),
            ))
            .add_service(OrderServiceServer::new(api::OrderApi { ctx: ctx.clone() })),
        config.listen,
        tls,
        shutdown.clone(),
    )
    .await?;
    // Drivers stop before their next step; wait for the steps under way.
    if !ctx.drivers_gate.drained(DRAIN_MAX).await {
        tracing::warn!(
            drivers = ctx.drivers_gate.in_flight(),
            "saga drivers still running after the drain limit; their orders resume elsewhere"
        );
    }
    let _ = relay.await;
    let _ = recovery.await;
    let _ = liveness.await;
    Ok(())
}
