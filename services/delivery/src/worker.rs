//! The worker that books shipments with the courier and follows their stages.

use platform::{
    http::HttpClient,
    ports::{StoreError, Tx},
    worker::{run_rounds, Round},
    Shutdown,
};
use serde::{Deserialize, Serialize};

use crate::{
    store::{DeliveryQuery, DeliveryWrite, SHIPMENTS},
    Ctx, Shipment,
};

/// Shipments handled per round.
const BATCH_MAX: usize = 64;

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
    let client = HttpClient::new(ctx.config.courier_timeout);
    let (poll, wake) = (ctx.config.worker_poll, ctx.work.clone());
    run_rounds("delivery", poll, wake, shutdown, || async {
        round(&ctx, &client).await.map(|()| Round::Idle)
    })
    .await;
}

async fn round(ctx: &Ctx, client: &HttpClient) -> anyhow::Result<()> {
    let store = &*ctx.infra.store;
    let mut last_error = None;
    for c in ctx.liveness.work_items(SHIPMENTS, BATCH_MAX).await? {
        let found = store
            .query(DeliveryQuery::Shipment {
                order_id: c.key.clone(),
            })
            .await;
        let v = match found {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                last_error = Some(e.into());
                continue;
            }
        };
        let s = v.value;
        match step(ctx, client, s.clone()).await {
            Ok(next) if next != s => {
                let tx = ctx.liveness.fence(Tx::new(), SHIPMENTS, &c.key, c.token);
                let tx = tx.write(DeliveryWrite::Update {
                    shipment: next.clone(),
                    version: v.version,
                });
                match store.commit(tx).await {
                    Ok(()) => ctx.changes.publish(&next.order_id),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => last_error = Some(anyhow::Error::from(e)),
                }
            }
            Ok(_) => {}
            Err(e) => last_error = Some(e),
        }
    }
    last_error.map_or(Ok(()), Err)
}

async fn step(ctx: &Ctx, client: &HttpClient, mut s: Shipment) -> anyhow::Result<Shipment> {
    let base = &ctx.config.courier_url;
    let view: CourierShipment = match (&s.courier_id, s.cancel_requested) {
        (None, true) => {
            s.stage = "CANCELLED".into();
            return Ok(s);
        }
        (None, false) => {
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
    Ok(s)
}
