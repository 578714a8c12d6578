//! The gRPC face of the delivery service.

use std::{pin::Pin, time::Duration};

use contracts::delivery::{
    delivery_service_server::DeliveryService, CreateShipmentRequest, Shipment as ShipmentMsg,
    ShipmentRef,
};
use futures::Stream;
use platform::{
    grpc::{idempotency_key, require_id, store_status},
    ports::{StoreError, Tx},
    store::load,
};
use tonic::{Request, Response, Status};

use crate::{Ctx, Shipment, FINAL_STAGES, SHIPMENTS};

const SERVICE: &str = "delivery";
/// How long one WatchShipment stream lives before the client must re-open it.
const WATCH_DURATION_MAX: Duration = Duration::from_secs(120);
/// Store poll interval of WatchShipment.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// Bound on an address.
const ADDRESS_BYTES_MAX: usize = 512;

pub(crate) struct DeliveryApi {
    pub ctx: Ctx,
}

fn to_msg(s: &Shipment) -> ShipmentMsg {
    ShipmentMsg {
        order_id: s.order_id.clone(),
        stage: s.stage.clone(),
        reason: String::new(),
    }
}

impl DeliveryApi {
    async fn read(&self, order_id: &str) -> Result<(i64, Shipment), Status> {
        let s = load::<Shipment>(&*self.ctx.infra.store, SHIPMENTS, order_id)
            .await
            .map_err(|e| store_status(SERVICE, e))?
            .ok_or_else(|| {
                Status::not_found(format!("{SERVICE}: no shipment for order {order_id}"))
            })?;
        Ok((s.version, s.value))
    }
}

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn create_shipment(
        &self,
        request: Request<CreateShipmentRequest>,
    ) -> Result<Response<ShipmentMsg>, Status> {
        idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        if req.address.is_empty() || req.address.len() > ADDRESS_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "{SERVICE}: address must be 1..={ADDRESS_BYTES_MAX} bytes"
            )));
        }
        let store = &*self.ctx.infra.store;
        if load::<Shipment>(store, SHIPMENTS, &req.order_id)
            .await
            .map_err(|e| store_status(SERVICE, e))?
            .is_none()
        {
            let s = Shipment {
                order_id: req.order_id.clone(),
                address: req.address,
                stage: "REQUESTED".into(),
                courier_id: None,
                cancel_requested: false,
            };
            let body = serde_json::to_value(&s).map_err(|e| Status::internal(e.to_string()))?;
            match store
                .commit(Tx::new().expect(SHIPMENTS, &req.order_id, None).put(
                    SHIPMENTS,
                    &req.order_id,
                    body,
                    true,
                ))
                .await
            {
                Ok(()) | Err(StoreError::Conflict { .. }) => self.ctx.work.notify_one(),
                Err(e) => return Err(store_status(SERVICE, e)),
            }
        }
        Ok(Response::new(to_msg(&self.read(&req.order_id).await?.1)))
    }

    async fn cancel_shipment(
        &self,
        request: Request<ShipmentRef>,
    ) -> Result<Response<ShipmentMsg>, Status> {
        idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        let store = &*self.ctx.infra.store;
        for _ in 0..8 {
            let (version, mut s) = self.read(&req.order_id).await?;
            if !s.is_active() || s.cancel_requested {
                return Ok(Response::new(to_msg(&s)));
            }
            s.cancel_requested = true;
            let body = serde_json::to_value(&s).map_err(|e| Status::internal(e.to_string()))?;
            match store
                .commit(
                    Tx::new()
                        .expect(SHIPMENTS, &req.order_id, Some(version))
                        .put(SHIPMENTS, &req.order_id, body, true),
                )
                .await
            {
                Ok(()) => {
                    self.ctx.work.notify_one();
                    return Ok(Response::new(to_msg(&s)));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_status(SERVICE, e)),
            }
        }
        Err(Status::aborted(format!(
            "{SERVICE}: cancel kept conflicting, retry"
        )))
    }

    async fn get_shipment(
        &self,
        request: Request<ShipmentRef>,
    ) -> Result<Response<ShipmentMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        Ok(Response::new(to_msg(&self.read(&req.order_id).await?.1)))
    }

    type WatchShipmentStream =
        Pin<Box<dyn Stream<Item = Result<ShipmentMsg, Status>> + Send + 'static>>;

    async fn watch_shipment(
        &self,
        request: Request<ShipmentRef>,
    ) -> Result<Response<Self::WatchShipmentStream>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        let api = DeliveryApi {
            ctx: self.ctx.clone(),
        };
        let (_, first) = api.read(&req.order_id).await?;
        let stream = futures::stream::unfold(
            (
                api,
                req.order_id,
                Some(to_msg(&first)),
                None::<String>,
                tokio::time::Instant::now(),
            ),
            |(api, order_id, pending, last, started)| async move {
                if let Some(m) = pending {
                    let s = m.stage.clone();
                    return Some((Ok(m), (api, order_id, None, Some(s), started)));
                }
                if last
                    .as_deref()
                    .is_some_and(|s| FINAL_STAGES.contains(&s) || s == "ERROR")
                {
                    return None;
                }
                loop {
                    if started.elapsed() > WATCH_DURATION_MAX {
                        return None;
                    }
                    tokio::time::sleep(WATCH_POLL).await;
                    match api.read(&order_id).await {
                        Ok((_, s)) if Some(&s.stage) != last.as_ref() => {
                            let m = to_msg(&s);
                            return Some((Ok(m), (api, order_id, None, Some(s.stage), started)));
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            return Some((
                                Err(e),
                                (api, order_id, None, Some("ERROR".into()), started),
                            ))
                        }
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
