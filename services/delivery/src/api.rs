//! The gRPC face of the delivery service.

use std::{pin::Pin, sync::Arc, time::Duration};

use contracts::delivery::{
    delivery_service_server::DeliveryService, CreateShipmentRequest, Shipment as ShipmentMsg,
    ShipmentRef,
};
use futures::Stream;
use platform::{
    changes::status_stream,
    grpc::{idempotency_key, require_id, store_status},
    ports::{StoreError, Tx},
    retry::on_conflict,
};
use tonic::{Request, Response, Status};

use crate::{
    store::{DeliveryQuery, DeliveryWrite},
    Ctx, Shipment, FINAL_STAGES,
};

const SERVICE: &str = "delivery";
/// How long one WatchShipment stream lives before the client must re-open it.
const WATCH_DURATION_MAX: Duration = Duration::from_secs(120);
/// The address of a shipment cancelled before it was ever asked for.
const NOT_BOOKED: &str = "(cancelled before booking)";
/// Bound on an address.
const ADDRESS_BYTES_MAX: usize = 512;

pub(crate) struct DeliveryApi {
    pub ctx: Ctx,
}

fn to_msg(s: &Shipment) -> ShipmentMsg {
    ShipmentMsg {
        order_id: s.order_id.clone(),
        stage: contracts::delivery::ShipmentStage::from_api_name(&s.stage) as i32,
        reason: String::new(),
    }
}

impl DeliveryApi {
    async fn read(&self, order_id: &str) -> Result<(i64, Shipment), Status> {
        let s = self
            .ctx
            .infra
            .store
            .query(DeliveryQuery::Shipment {
                order_id: order_id.to_owned(),
            })
            .await
            .map_err(|e| store_status(SERVICE, e))?
            .ok_or_else(|| {
                Status::not_found(format!("{SERVICE}: no shipment for order {order_id}"))
            })?;
        Ok((s.version, s.value))
    }
}

impl DeliveryApi {
    async fn create_shipment_in_span(
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
        let existing = store
            .query(DeliveryQuery::Shipment {
                order_id: req.order_id.clone(),
            })
            .await
            .map_err(|e| store_status(SERVICE, e))?;
        if existing.is_none() {
            let s = Shipment {
                order_id: req.order_id.clone(),
                address: req.address,
                stage: "REQUESTED".into(),
                courier_id: None,
                cancel_requested: false,
                trace: platform::trace::current_stored(),
            };
            match store
                .commit(Tx::new().write(DeliveryWrite::Insert(s)))
                .await
            {
                Ok(()) | Err(StoreError::Conflict { .. }) => {
                    self.ctx.work.notify_one();
                    self.ctx.changes.publish(&req.order_id);
                }
                Err(e) => return Err(store_status(SERVICE, e)),
            }
        }
        Ok(Response::new(to_msg(&self.read(&req.order_id).await?.1)))
    }

    async fn cancel_shipment_in_span(
        &self,
        request: Request<ShipmentRef>,
    ) -> Result<Response<ShipmentMsg>, Status> {
        idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        let store = &*self.ctx.infra.store;
        // The worker may move the shipment on meanwhile: re-read and try again.
        let cancelled = on_conflict("cancel shipment", |_| async {
            let query = DeliveryQuery::Shipment {
                order_id: req.order_id.clone(),
            };
            let Some(v) = store.query(query).await? else {
                // No shipment yet: a cancelled record, so that a CreateShipment still on its
                // way finds it and books nothing.
                let s = Shipment {
                    order_id: req.order_id.clone(),
                    address: NOT_BOOKED.into(),
                    stage: "CANCELLED".into(),
                    courier_id: None,
                    cancel_requested: true,
                    trace: platform::trace::current_stored(),
                };
                store
                    .commit(Tx::new().write(DeliveryWrite::Insert(s.clone())))
                    .await?;
                return Ok(Some((s, true)));
            };
            let mut s = v.value;
            if !s.is_active() || s.cancel_requested {
                return Ok(Some((s, false)));
            }
            s.cancel_requested = true;
            let tx = Tx::new().write(DeliveryWrite::Update {
                shipment: s.clone(),
                version: v.version,
            });
            store.commit(tx).await?;
            Ok(Some((s, true)))
        })
        .await
        .map_err(|e| store_status(SERVICE, e))?;
        match cancelled {
            None => Err(Status::internal(format!(
                "{SERVICE}: cancel of order {} left no shipment",
                req.order_id
            ))),
            Some((s, changed)) => {
                if changed {
                    self.ctx.work.notify_one();
                    self.ctx.changes.publish(&req.order_id);
                }
                Ok(Response::new(to_msg(&s)))
            }
        }
    }
}

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn create_shipment(
        &self,
        request: Request<CreateShipmentRequest>,
    ) -> Result<Response<ShipmentMsg>, Status> {
        let caller = platform::trace::of_request(&request);
        platform::trace::serve(
            "delivery.CreateShipment",
            caller,
            self.create_shipment_in_span(request),
        )
        .await
    }

    async fn cancel_shipment(
        &self,
        request: Request<ShipmentRef>,
    ) -> Result<Response<ShipmentMsg>, Status> {
        let caller = platform::trace::of_request(&request);
        platform::trace::serve(
            "delivery.CancelShipment",
            caller,
            self.cancel_shipment_in_span(request),
        )
        .await
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
        // Subscribe before the first read: no change between the two is missed.
        let subscription = self.ctx.changes.subscribe(&req.order_id);
        let (_, first) = self.read(&req.order_id).await?;
        let api = Arc::new(DeliveryApi {
            ctx: self.ctx.clone(),
        });
        let order_id = req.order_id;
        let read = move || {
            let (api, order_id) = (api.clone(), order_id.clone());
            async move { api.read(&order_id).await.map(|(_, s)| to_msg(&s)) }
        };
        Ok(Response::new(status_stream(
            subscription,
            to_msg(&first),
            read,
            |m: &ShipmentMsg| FINAL_STAGES.contains(&m.stage().api_name()),
            WATCH_DURATION_MAX,
        )))
    }
}
