//! Status transitions: one store transaction writes the order and its outbox event.

use platform::trace::TraceContext;
use platform::{
    outbox::{to_record, EVENT_ID_HEADER},
    ports::{OutboxMessage, OutboxRow, ProducedRecord, Tx, Versioned},
};

use crate::{
    domain::{Order, OrderStatus, StatusChanged, ORDERS, ORDER_STATUS_TOPIC},
    saga::DriverClaim,
    store::OrderWrite,
    Ctx,
};

/// Header on each status event naming the saga driver that committed it:
/// `<instance>/<claim token>` (absent on CREATED, which the API commits).
pub const DRIVER_HEADER: &str = "saga-driver";

/// Milliseconds since the epoch (simulated time in the simulation).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The outbox message announcing `order`'s latest status.
pub(crate) fn status_event(order: &Order) -> OutboxMessage {
    let seq = order.history.len().saturating_sub(1) as u32;
    let event = StatusChanged {
        event_id: format!("{}:{seq}", order.order_id),
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        seq,
        status: order.status,
        previous: seq.checked_sub(1).map(|i| order.history[i as usize]),
        amount_minor: order.amount_minor,
        currency: order.currency.clone(),
    };
    OutboxMessage {
        event_id: event.event_id.clone(),
        topic: ORDER_STATUS_TOPIC.into(),
        key: order.order_id.clone(),
        payload: serde_json::to_value(&event).unwrap_or_default(),
        // The order's trace reaches every consumer of its events.
        // (From the span that commits it, when that runs in the order's trace.)
        headers: TraceContext::from_stored(&order.trace)
            .map(|stored| {
                platform::trace::current()
                    .filter(|c| c.trace_id == stored.trace_id)
                    .unwrap_or(stored)
                    .headers()
            })
            .unwrap_or_default(),
    }
}

/// Moves `order` to `next`, fenced by the driver's `claim`; the new order on success. A
/// conflict means someone else moved it first or took the claim over: the caller re-reads.
pub(crate) async fn transition(
    ctx: &Ctx,
    claim: &DriverClaim,
    order: Versioned<Order>,
    next: OrderStatus,
    reason: &str,
) -> anyhow::Result<Order> {
    let current = order.value.status;
    anyhow::ensure!(
        current.can_become(next),
        "illegal transition {current:?} -> {next:?}"
    );
    let mut o = order.value;
    let entered_ms = o.status_since_ms;
    o.status = next;
    o.history.push(next);
    o.status_since_ms = now_ms();
    if !reason.is_empty() {
        o.reason = reason.into();
    }
    let mut event = status_event(&o);
    event
        .headers
        .push((DRIVER_HEADER.to_owned(), ctx.liveness.stamp(claim.token)));
    let tx = ctx
        .liveness
        .fence(Tx::new(), ORDERS, &o.order_id, claim.token)
        .write(OrderWrite::Update {
            order: o.clone(),
            version: order.version,
        });
    if ctx.infra.mutants.publish_without_outbox {
        // Mutant: a dual write. The commit and the publish are not atomic.
        ctx.infra.store.commit(tx).await?;
        publish_directly(ctx, event).await;
        return Ok(o);
    }
    match ctx.infra.store.commit(tx.emit(event)).await {
        Ok(()) => {
            ctx.outbox.notify();
            tracing::debug!(order_id = %o.order_id, status = next.as_str(), "transition");
            observe(
                ctx,
                current,
                next,
                o.status_since_ms.saturating_sub(entered_ms),
                (o.created_ms > 0).then(|| o.status_since_ms.saturating_sub(o.created_ms)),
            );
            Ok(o)
        }
        Err(e) => Err(e.into()),
    }
}

/// Counts a committed transition: how long the order stayed in `from`, and the saga's
/// outcome and whole duration (`lived_ms`, since the order was placed; unknown for orders
/// placed before that was kept) when `to` ends it.
fn observe(ctx: &Ctx, from: OrderStatus, to: OrderStatus, stayed_ms: u64, lived_ms: Option<u64>) {
    let metrics = &ctx.infra.metrics;
    metrics
        .histogram(
            "saga_step_duration_seconds",
            "Time an order spent in a status before the saga moved it on, by status.",
            &[("status", from.as_str())],
            &platform::metrics::DURATION_BUCKETS,
        )
        .observe(stayed_ms as f64 / 1000.0);
    if to.is_terminal() {
        metrics
            .counter(
                "sagas_ended_total",
                "Sagas ended, by outcome (DELIVERED or CANCELLED) and the status before it.",
                &[("outcome", to.as_str()), ("from", from.as_str())],
            )
            .inc();
        if let Some(lived_ms) = lived_ms {
            metrics
                .histogram(
                    "saga_duration_seconds",
                    "Time from an order's placing to the end of its saga, by outcome.",
                    &[("outcome", to.as_str())],
                    &platform::metrics::DURATION_BUCKETS,
                )
                .observe(lived_ms as f64 / 1000.0);
        }
    }
}

/// The mutant's direct publish: one attempt, and the event is gone if it fails.
async fn publish_directly(ctx: &Ctx, message: OutboxMessage) {
    let record: ProducedRecord = to_record(&OutboxRow {
        id: 0,
        message,
        created_ms: 0,
    });
    debug_assert!(record.headers.iter().any(|(k, _)| k == EVENT_ID_HEADER));
    let sent = async {
        let p = ctx
            .infra
            .events
            .producer(ctx.infra.producer.clone())
            .await?;
        p.send(record).await
    };
    if let Err(e) = sent.await {
        tracing::warn!(error = %e, "direct publish failed; the event is lost");
    }
}
