//! The worker that books shipments with the courier and follows their stages.

use platform::{
    http::HttpClient,
    ports::{Claimed, StoreError, Tx},
    worker::{run_rounds, Round},
    Shutdown,
};
use serde::{Deserialize, Serialize};

use crate::{
    store::{DeliveryQuery, DeliveryWrite, SHIPMENTS},
    Ctx, Shipment,
};

/// Shipments handled per round.
const BATCH_MAX: usize = 256;

/// The courier's wire format.
#[derive(Serialize)]
struct BookBody<'a> {
    order_id: &'a str,
    address: &'a str,
}
#[derive(Deserialize)]
struct CourierShipment {
    shipment_id: String,
    stage: String,
}

pub(crate) async fn run(ctx: Ctx, shutdown: Shutdown) {
    let courier = platform::breaker::Breaker::shared("courier");
    ctx.infra.metrics.watch_breaker(courier.clone());
    let client = HttpClient::new(ctx.config.courier_timeout)
        .with_breaker(courier)
        .observed(ctx.infra.metrics.clone(), "courier");
    let (poll, wake) = (ctx.config.worker_poll, ctx.work.clone());
    run_rounds("delivery", poll, wake, shutdown, || async {
        round(&ctx, &client).await.map(|()| Round::Idle)
    })
    .await;
}

/// One pass over the shipments with work, [`platform::claims::WORK_CONCURRENCY_MAX`] at a
/// time.
async fn round(ctx: &Ctx, client: &HttpClient) -> anyhow::Result<()> {
    let claimed = ctx.liveness.work_items(SHIPMENTS, BATCH_MAX).await?;
    let results = platform::claims::each_concurrently(claimed, |c| work_on(ctx, client, c)).await;
    results
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// Moves one claimed shipment on.
async fn work_on(ctx: &Ctx, client: &HttpClient, c: Claimed) -> anyhow::Result<()> {
    let store = &*ctx.infra.store;
    let Some(v) = store
        .query(DeliveryQuery::Shipment {
            order_id: c.key.clone(),
        })
        .await?
    else {
        return Ok(());
    };
    // The courier call is a span of the trace of the request that made the shipment.
    let trace = platform::trace::TraceContext::from_stored(&v.value.trace);
    let stepped = step(ctx, client, v.value.clone());
    let next = platform::trace::span("delivery.courier", trace, stepped, |r| r.is_ok()).await?;
    if next == v.value {
        return Ok(());
    }
    let tx = ctx.liveness.fence(Tx::new(), SHIPMENTS, &c.key, c.token);
    let tx = tx.write(DeliveryWrite::Update {
        shipment: next.clone(),
        version: v.version,
    });
    match store.commit(tx).await {
        Ok(()) => ctx.changes.publish(&next.order_id),
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn step(ctx: &Ctx, client: &HttpClient, mut s: Shipment) -> anyhow::Result<Shipment> {
    let base = &ctx.config.courier_url;
    // A cancel before the booking's answer came still books (the same idempotency key finds
    // a booking that reached the courier) and then cancels: the courier's answer is the truth.
    let asked_to_cancel = s.courier_id.is_some() && s.cancel_requested;
    let view: CourierShipment = match (&s.courier_id, s.cancel_requested) {
        (None, _) => {
            let key = format!("ship-{}", s.order_id);
            client
                .post_json(
                    &format!("{base}/v1/shipments"),
                    &[("idempotency-key", &key)],
                    &BookBody {
                        order_id: &s.order_id,
                        address: &s.address,
                    },
                )
                .await?
        }
        (Some(id), true) => {
            client
                .post_json(
                    &format!("{base}/v1/shipments/{id}/cancel"),
                    &[],
                    &serde_json::json!({}),
                )
                .await?
        }
        (Some(id), false) => {
            client
                .get_json(&format!("{base}/v1/shipments/{id}"))
                .await?
        }
    };
    s.courier_id = Some(view.shipment_id);
    s.stage = view.stage;
    if asked_to_cancel && ctx.infra.mutants.cancel_ignores_courier_answer {
        s.stage = "CANCELLED".into();
    }
    Ok(s)
}
