//! The saga driver: one task per unfinished order, re-started by recovery after a crash.
//!
//! Each step reads the order, calls the service it needs (with an idempotency key derived from
//! the order, so a retried step never repeats its effect), and commits the next status. A step
//! that fails is retried with backoff.
//!
//! A step that outlives its deadline (measured from when the order entered the status, so it
//! survives restarts) has an *unknown* outcome, not a failed one: the provider may have acted
//! and its answer not reached us. The saga asks before it compensates:
//! - payment: the payment service's record of the charge (kept up to date from the PSP by
//!   idempotency key); captured → PAID and the order goes on; anything else → PAYMENT_FAILED,
//!   whose refund also returns a charge captured later, and CANCELLED only once the payment
//!   service confirms no money is held;
//! - delivery: CANCELLING_DELIVERY asks the courier (through the delivery service) to cancel
//!   and waits, without a deadline, for its verdict: DELIVERED if the goods arrived after all
//!   (the payment is kept), otherwise DELIVERY_FAILED → REFUNDING → CANCELLED.
//!
//! The verdict may take as long as a partition lasts; after heal it comes within the
//! providers' answer times, so every saga still ends.
//!
//! The buyer is told by the notification service (`Notify`, keyed by the order and the
//! message, so a repeated step sends once) before the step's transition commits: "order
//! confirmed" (e-mail) when paid, "payment failed" (SMS), "delivered" (push), "refund issued"
//! (e-mail). A message the service refuses is logged and skipped, never a reason to hold an
//! order; an unreachable service holds the step until it answers.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use contracts::{
    delivery::{
        delivery_service_client::DeliveryServiceClient, CreateShipmentRequest, ShipmentRef,
        ShipmentStage,
    },
    notification::{
        notification_service_client::NotificationServiceClient, Channel as MessageChannel,
        NotifyRequest,
    },
    payment::{
        payment_service_client::PaymentServiceClient, ChargeRequest, PaymentRef, PaymentStatus,
        RefundRequest,
    },
};
use futures::StreamExt;
use platform::{
    grpc::{self, LazyChannel},
    ports::Versioned,
    retry::{retry, RetryError, RetryPolicy},
};
use tonic::{transport::Channel, Status};

use crate::{
    domain::{Order, OrderStatus, ORDERS},
    store::OrderQuery,
    transition::{now_ms, transition},
    Ctx,
};

/// Orders claimed per claim round.
const CLAIM_BATCH_MAX: usize = 10_000;

/// A running saga driver: the claim it drives under and its stop switch.
pub(crate) struct Driver {
    /// The fencing token of this instance's claim on the order.
    pub token: i64,
    /// Set when the claim is lost (taken over, or this instance's liveness lease may have
    /// run out); the driver stops before its next step.
    pub stop: Arc<AtomicBool>,
}

/// The claim a driver works under: every transition it commits is fenced by it.
#[derive(Clone, Debug)]
pub(crate) struct DriverClaim {
    pub token: i64,
    stop: Arc<AtomicBool>,
}

/// Claims this instance's orders now, then every `recovery_interval` or when woken, and
/// keeps exactly one driver running per claimed order.
pub(crate) async fn recover(ctx: Ctx) {
    ctx.liveness.renew().await;
    loop {
        claim_round(&ctx).await;
        tokio::select! {
            biased;
            _ = ctx.shutdown.wait() => return,
            _ = ctx.claim_wake.notified() => {}
            _ = tokio::time::sleep(ctx.config.recovery_interval) => {}
        }
    }
}

async fn claim_round(ctx: &Ctx) {
    let claimed: BTreeMap<String, i64> =
        match ctx.liveness.work_items(ORDERS, CLAIM_BATCH_MAX).await {
            Ok(c) => c.into_iter().map(|c| (c.key, c.token)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "claiming orders failed");
                return;
            }
        };
    // A full list may leave out orders this instance still holds: then only a changed
    // token proves a claim lost.
    let complete = claimed.len() < CLAIM_BATCH_MAX;
    let Ok(mut drivers) = ctx.drivers.lock() else {
        return;
    };
    drivers.retain(|id, d| {
        let keep = match claimed.get(id) {
            Some(token) => *token == d.token,
            None => !complete,
        };
        if !keep {
            d.stop.store(true, Ordering::SeqCst);
        }
        keep
    });
    for (id, token) in claimed {
        if drivers.contains_key(&id) {
            continue;
        }
        let stop = Arc::new(AtomicBool::new(false));
        drivers.insert(
            id.clone(),
            Driver {
                token,
                stop: stop.clone(),
            },
        );
        let claim = DriverClaim { token, stop };
        let ctx = ctx.clone();
        let pass = ctx.drivers_gate.enter();
        tokio::spawn(async move {
            let _pass = pass;
            // Removes the entry however the driver ends (a panic included), so the next claim
            // round starts a new one.
            let _entry = DriverEntry {
                ctx: &ctx,
                order_id: &id,
                stop: claim.stop.clone(),
            };
            drive(&ctx, &id, &claim).await;
        });
    }
}

/// A driver's entry in [`Ctx::drivers`], removed when the driver ends.
struct DriverEntry<'a> {
    ctx: &'a Ctx,
    order_id: &'a str,
    stop: Arc<AtomicBool>,
}

impl Drop for DriverEntry<'_> {
    fn drop(&mut self) {
        if let Ok(mut drivers) = self.ctx.drivers.lock() {
            if drivers
                .get(self.order_id)
                .is_some_and(|d| Arc::ptr_eq(&d.stop, &self.stop))
            {
                drivers.remove(self.order_id);
            }
        }
    }
}

impl DriverClaim {
    /// Whether the driver may take another step.
    fn valid(&self, ctx: &Ctx) -> bool {
        !self.stop.load(Ordering::SeqCst) && ctx.liveness.is_held()
    }
}

#[tracing::instrument(skip_all, fields(order_id = %order_id, token = claim.token))]
async fn drive(ctx: &Ctx, order_id: &str, claim: &DriverClaim) {
    let backoff = RetryPolicy::forever(Duration::from_millis(200), Duration::from_secs(5));
    let mut failures = 0u32;
    while !ctx.shutdown.is_requested() && claim.valid(ctx) {
        let order = match load(ctx, order_id).await {
            Ok(Some(o)) => o,
            Ok(None) => return,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot read order; retrying");
                }
                pause(ctx, backoff.delay(failures)).await;
                continue;
            }
        };
        if order.value.status.is_terminal() {
            return;
        }
        // Each step is a span of the trace of the request that created the order.
        let name = format!("order.saga {}", order.value.status.as_str());
        let trace = platform::trace::TraceContext::from_stored(&order.value.trace);
        let stepped = platform::trace::span(&name, trace, step(ctx, order, claim), |r| r.is_ok());
        match stepped.await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        failures,
                        "saga step failed; retrying"
                    );
                }
                pause(ctx, backoff.delay(failures)).await;
            }
        }
    }
}

async fn load(
    ctx: &Ctx,
    order_id: &str,
) -> Result<Option<Versioned<Order>>, platform::ports::StoreError> {
    ctx.infra
        .store
        .query(OrderQuery::Order {
            order_id: order_id.to_owned(),
        })
        .await
}

async fn pause(ctx: &Ctx, d: Duration) {
    tokio::select! {
        biased;
        _ = tokio::time::sleep(d) => {}
        _ = ctx.shutdown.wait() => {}
    }
}

/// Time left before the current status's deadline `limit` runs out.
fn remaining(order: &Order, limit: Duration) -> Duration {
    let spent = Duration::from_millis(now_ms().saturating_sub(order.status_since_ms));
    limit.saturating_sub(spent)
}

async fn step(ctx: &Ctx, order: Versioned<Order>, claim: &DriverClaim) -> anyhow::Result<()> {
    use OrderStatus::*;
    let o = order.value.clone();
    match o.status {
        Created => {
            transition(ctx, claim, order, PaymentPending, "").await?;
        }
        PaymentPending => {
            let left = remaining(&o, ctx.config.payment_step_timeout);
            if left.is_zero() {
                return payment_deadline(ctx, claim, order).await;
            }
            let key = if ctx.infra.mutants.charge_without_idempotency_key {
                None
            } else {
                Some(format!("charge-{}", o.order_id))
            };
            call(ctx, &ctx.payment, "charge", |ch, _| {
                let key = key
                    .clone()
                    .unwrap_or_else(|| platform::ids::uuid_v4().to_string());
                let req = ChargeRequest {
                    order_id: o.order_id.clone(),
                    amount_minor: o.amount_minor,
                    currency: o.currency.clone(),
                };
                async move {
                    PaymentServiceClient::with_interceptor(ch, platform::trace::inject)
                        .charge(grpc::request(req, Some(&key)))
                        .await
                }
            })
            .await?;
            let outcomes = [PaymentStatus::Captured, PaymentStatus::Declined];
            match wait_payment(ctx, &o.order_id, &outcomes, left).await? {
                Some(PaymentStatus::Captured) => transition(ctx, claim, order, Paid, "").await?,
                Some(_) => transition(ctx, claim, order, PaymentFailed, "payment declined").await?,
                None => return payment_deadline(ctx, claim, order).await,
            };
        }
        PaymentFailed => {
            // Whatever happened at the PSP, no money may stay with us: the refund request
            // also returns a charge the PSP captures later. CANCELLED once no money is held.
            request_refund(ctx, &o.order_id).await?;
            if ctx.infra.mutants.compensate_without_asking {
                transition(ctx, claim, order, Cancelled, "").await?;
                return Ok(());
            }
            let settled = [PaymentStatus::Refunded];
            match wait_payment(ctx, &o.order_id, &settled, SETTLE_WAIT).await {
                Ok(Some(_)) => {
                    tell_payment_failed(ctx, &o).await?;
                    transition(ctx, claim, order, Cancelled, "").await?;
                }
                Err(e) if is_not_found(&e) => {
                    tell_payment_failed(ctx, &o).await?;
                    transition(ctx, claim, order, Cancelled, "").await?;
                }
                Ok(None) => anyhow::bail!("the payment still holds money; waiting for its refund"),
                Err(e) => return Err(e),
            }
        }
        Paid => {
            let eta =
                platform::calendar::date_of_ms(o.status_since_ms + DELIVERY_DAYS * 86_400_000);
            tell(
                ctx,
                &o,
                "confirmed",
                MessageChannel::Email,
                "order_confirmed",
                &[("eta", &eta)],
            )
            .await?;
            transition(ctx, claim, order, Shipping, "").await?;
        }
        Shipping | Shipped => {
            let left = remaining(&o, ctx.config.delivery_step_timeout);
            if left.is_zero() {
                return delivery_deadline(ctx, claim, order).await;
            }
            if o.status == Shipping {
                let address = ctx.config.default_address.clone();
                call(ctx, &ctx.delivery, "create shipment", |ch, _| {
                    let req = CreateShipmentRequest {
                        order_id: o.order_id.clone(),
                        address: address.clone(),
                    };
                    let key = format!("ship-{}", o.order_id);
                    async move {
                        DeliveryServiceClient::with_interceptor(ch, platform::trace::inject)
                            .create_shipment(grpc::request(req, Some(&key)))
                            .await
                    }
                })
                .await?;
            }
            let wanted: &[ShipmentStage] = if o.status == Shipping {
                &[
                    ShipmentStage::PickedUp,
                    ShipmentStage::InTransit,
                    ShipmentStage::Delivered,
                    ShipmentStage::Failed,
                    ShipmentStage::Cancelled,
                ]
            } else {
                &[
                    ShipmentStage::Delivered,
                    ShipmentStage::Failed,
                    ShipmentStage::Cancelled,
                ]
            };
            match wait_shipment(ctx, &o.order_id, wanted, left).await? {
                Some(ShipmentStage::Failed | ShipmentStage::Cancelled) => {
                    transition(ctx, claim, order, DeliveryFailed, "delivery failed").await?;
                }
                Some(s) if o.status == Shipping => {
                    if s == ShipmentStage::Delivered {
                        tell_delivered(ctx, &o).await?;
                    }
                    let shipped = transition(ctx, claim, order, Shipped, "").await?;
                    if s == ShipmentStage::Delivered {
                        let again = load(ctx, &shipped.order_id).await?;
                        if let Some(again) = again {
                            transition(ctx, claim, again, Delivered, "").await?;
                        }
                    }
                }
                Some(_) => {
                    tell_delivered(ctx, &o).await?;
                    transition(ctx, claim, order, Delivered, "").await?;
                }
                None => return delivery_deadline(ctx, claim, order).await,
            }
        }
        CancellingDelivery => {
            // The courier's verdict decides: a cancel it refused because the goods arrived
            // is a delivery, and the payment is kept.
            cancel_shipment(ctx, &o.order_id).await?;
            let verdicts = [
                ShipmentStage::Delivered,
                ShipmentStage::Failed,
                ShipmentStage::Cancelled,
            ];
            match wait_shipment(ctx, &o.order_id, &verdicts, SETTLE_WAIT).await {
                Ok(Some(ShipmentStage::Delivered)) => {
                    tell_delivered(ctx, &o).await?;
                    transition(ctx, claim, order, Delivered, "delivered after its deadline")
                        .await?;
                }
                Ok(Some(_)) => {
                    transition(ctx, claim, order, DeliveryFailed, "delivery timed out").await?;
                }
                // Nothing was ever booked: the delivery service keeps a cancelled record, so a
                // booking still on its way is refused.
                Err(e) if is_not_found(&e) => {
                    transition(ctx, claim, order, DeliveryFailed, "delivery timed out").await?;
                }
                Ok(None) => anyhow::bail!("the courier's verdict is not known yet"),
                Err(e) => return Err(e),
            }
        }
        DeliveryFailed => {
            transition(ctx, claim, order, Refunding, "").await?;
        }
        Refunding => {
            request_refund(ctx, &o.order_id).await?;
            let refunded = [PaymentStatus::Refunded];
            match wait_payment(ctx, &o.order_id, &refunded, Duration::from_secs(30)).await? {
                Some(_) => {
                    tell(
                        ctx,
                        &o,
                        "refund",
                        MessageChannel::Email,
                        "refund_issued",
                        &[],
                    )
                    .await?;
                    transition(ctx, claim, order, Cancelled, "").await?;
                }
                None => anyhow::bail!("refund not confirmed yet"),
            }
        }
        Delivered | Cancelled => {}
    }
    Ok(())
}

/// Days a delivery is promised in (the "order confirmed" message's estimate).
const DELIVERY_DAYS: u64 = 3;

/// Asks the notification service to tell the buyer of `o` with `template`, under the key
/// `<what>-<order id>`. Retried while the service cannot answer (the step waits); a refusal
/// is logged and skipped.
async fn tell(
    ctx: &Ctx,
    o: &Order,
    what: &str,
    channel: MessageChannel,
    template: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<()> {
    let Some(peer) = &ctx.notification else {
        return Ok(());
    };
    let key = format!("{what}-{}", o.order_id);
    let mut all: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all.insert("order_id".into(), o.order_id.clone());
    let r = call(ctx, peer, "notify", |ch, _| {
        let req = NotifyRequest {
            recipient: o.customer_id.clone(),
            channel: channel as i32,
            template: template.to_owned(),
            params: all.clone(),
        };
        let key = key.clone();
        async move {
            NotificationServiceClient::with_interceptor(ch, platform::trace::inject)
                .notify(grpc::request(req, Some(&key)))
                .await
        }
    })
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(CallError::Refused { status, .. }) => {
            tracing::error!(order_id = %o.order_id, %key, %status, "notification refused; the order goes on");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn tell_payment_failed(ctx: &Ctx, o: &Order) -> anyhow::Result<()> {
    let reason = if o.reason.is_empty() {
        "the payment did not go through"
    } else {
        o.reason.as_str()
    };
    tell(
        ctx,
        o,
        "payment-failed",
        MessageChannel::Sms,
        "payment_failed",
        &[("reason", reason)],
    )
    .await
}

async fn tell_delivered(ctx: &Ctx, o: &Order) -> anyhow::Result<()> {
    tell(
        ctx,
        o,
        "delivered",
        MessageChannel::Push,
        "order_delivered",
        &[],
    )
    .await
}

/// How long one wait for a provider's verdict lasts before the step is retried (the wait
/// itself has no deadline).
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// Whether `e` says the peer has no record of the thing asked about.
fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Status>()
        .is_some_and(|s| s.code() == tonic::Code::NotFound)
        || e.downcast_ref::<CallError>()
            .is_some_and(CallError::is_not_found)
}

/// The payment step's deadline passed: the charge's outcome is asked of the payment service
/// (which learns it from the PSP by idempotency key) before the order gives up on it.
async fn payment_deadline(
    ctx: &Ctx,
    claim: &DriverClaim,
    order: Versioned<Order>,
) -> anyhow::Result<()> {
    use OrderStatus::*;
    if !ctx.infra.mutants.compensate_without_asking {
        let status = payment_status(ctx, &order.value.order_id).await?;
        if status == Some(PaymentStatus::Captured) {
            transition(ctx, claim, order, Paid, "captured at its deadline").await?;
            return Ok(());
        }
    }
    transition(ctx, claim, order, PaymentFailed, "payment timed out").await?;
    Ok(())
}

/// The delivery step's deadline passed: the shipment's fate is unknown until the courier
/// answers a cancel.
async fn delivery_deadline(
    ctx: &Ctx,
    claim: &DriverClaim,
    order: Versioned<Order>,
) -> anyhow::Result<()> {
    use OrderStatus::*;
    if ctx.infra.mutants.compensate_without_asking {
        cancel_shipment(ctx, &order.value.order_id).await?;
        transition(ctx, claim, order, DeliveryFailed, "delivery timed out").await?;
        return Ok(());
    }
    transition(ctx, claim, order, CancellingDelivery, "delivery timed out").await?;
    Ok(())
}

/// The payment service's status of the order's charge (`None`: it has no record of one).
async fn payment_status(ctx: &Ctx, order_id: &str) -> anyhow::Result<Option<PaymentStatus>> {
    let r = call(ctx, &ctx.payment, "get payment", |ch, _| {
        let req = PaymentRef {
            order_id: order_id.to_owned(),
        };
        async move {
            PaymentServiceClient::with_interceptor(ch, platform::trace::inject)
                .get_payment(grpc::request(req, None))
                .await
        }
    })
    .await;
    match r {
        Ok(p) => Ok(Some(p.status())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The peer answered with a status that retrying cannot change; decisions go by its code.
    #[error("{what}: refused: {status}")]
    Refused { what: String, status: Status },
    /// Transient failures until the retry budget ran out, or shutdown came first.
    #[error("{what}: {detail}")]
    GaveUp { what: String, detail: String },
}

impl CallError {
    /// Whether the peer said the thing asked about does not exist.
    fn is_not_found(&self) -> bool {
        matches!(self, CallError::Refused { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

/// A unary call to a peer, retried on transient failures with the one retry helper.
async fn call<T, F, Fut>(ctx: &Ctx, peer: &LazyChannel, what: &str, f: F) -> Result<T, CallError>
where
    F: Fn(Channel, u32) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let f = &f;
    let policy = RetryPolicy {
        retries: Some(ctx.infra.metrics.counter(
            "rpc_client_retries_total",
            "gRPC calls made again after a transient failure, by what was asked (with \
             rpc_client_requests_total, the retry rate).",
            &[("call", what)],
        )),
        ..RetryPolicy::rpc()
    };
    let r = retry(
        &policy,
        what,
        &ctx.shutdown,
        grpc::is_transient,
        |attempt| async move {
            let r = peer.call(|ch| f(ch, attempt)).await?;
            Ok(r.into_inner())
        },
    )
    .await;
    r.map_err(|e| match e {
        RetryError::Permanent(status) => CallError::Refused {
            what: what.to_owned(),
            status,
        },
        other => CallError::GaveUp {
            what: what.to_owned(),
            detail: other.to_string(),
        },
    })
}

async fn request_refund(ctx: &Ctx, order_id: &str) -> anyhow::Result<()> {
    let r = call(ctx, &ctx.payment, "refund", |ch, _| {
        let req = RefundRequest {
            order_id: order_id.to_owned(),
        };
        let key = format!("refund-{order_id}");
        async move {
            PaymentServiceClient::with_interceptor(ch, platform::trace::inject)
                .refund(grpc::request(req, Some(&key)))
                .await
        }
    })
    .await;
    match r {
        Ok(_) => Ok(()),
        // No payment was ever recorded: nothing to refund.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn cancel_shipment(ctx: &Ctx, order_id: &str) -> anyhow::Result<()> {
    let r = call(ctx, &ctx.delivery, "cancel shipment", |ch, _| {
        let req = ShipmentRef {
            order_id: order_id.to_owned(),
        };
        let key = format!("cancel-{order_id}");
        async move {
            DeliveryServiceClient::with_interceptor(ch, platform::trace::inject)
                .cancel_shipment(grpc::request(req, Some(&key)))
                .await
        }
    })
    .await;
    match r {
        Ok(_) => Ok(()),
        // No shipment was ever booked: nothing to cancel.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Follows WatchPayment until one of `wanted` or `within` passes (`None`).
async fn wait_payment(
    ctx: &Ctx,
    order_id: &str,
    wanted: &[PaymentStatus],
    within: Duration,
) -> anyhow::Result<Option<PaymentStatus>> {
    let open = async {
        let mut req = grpc::request(
            PaymentRef {
                order_id: order_id.to_owned(),
            },
            None,
        );
        req.set_timeout(within);
        let r = ctx
            .payment
            .call(|ch| async move {
                PaymentServiceClient::with_interceptor(ch, platform::trace::inject)
                    .watch_payment(req)
                    .await
            })
            .await;
        Ok(r?.into_inner())
    };
    watch_until(open, |p| p.status(), wanted, within).await
}

/// Follows WatchShipment until one of `wanted` or `within` passes (`None`).
async fn wait_shipment(
    ctx: &Ctx,
    order_id: &str,
    wanted: &[ShipmentStage],
    within: Duration,
) -> anyhow::Result<Option<ShipmentStage>> {
    let open = async {
        let mut req = grpc::request(
            ShipmentRef {
                order_id: order_id.to_owned(),
            },
            None,
        );
        req.set_timeout(within);
        let r = ctx
            .delivery
            .call(|ch| async move {
                DeliveryServiceClient::with_interceptor(ch, platform::trace::inject)
                    .watch_shipment(req)
                    .await
            })
            .await;
        Ok(r?.into_inner())
    };
    watch_until(open, |s| s.stage(), wanted, within).await
}

/// Reads the stream `open` gives until an item whose `state` is one of `wanted` (that
/// state), or `within` passes (`None`). A stream that ends first is an error: the server
/// restarted or ended the stream, and the caller's step is retried.
async fn watch_until<T, S, St: PartialEq + Copy>(
    open: impl std::future::Future<Output = Result<S, Status>>,
    state: impl Fn(&T) -> St,
    wanted: &[St],
    within: Duration,
) -> anyhow::Result<Option<St>>
where
    S: futures::Stream<Item = Result<T, Status>> + Unpin,
{
    let watch = async {
        let mut stream = open.await?;
        while let Some(item) = stream.next().await {
            let s = state(&item?);
            if wanted.contains(&s) {
                return Ok::<_, Status>(Some(s));
            }
        }
        Ok(None)
    };
    match tokio::time::timeout(within, watch).await {
        Ok(Ok(Some(s))) => Ok(Some(s)),
        Ok(Ok(None)) => anyhow::bail!("status stream ended early"),
        Ok(Err(e)) if e.code() == tonic::Code::DeadlineExceeded => Ok(None),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Ok(None),
    }
}
