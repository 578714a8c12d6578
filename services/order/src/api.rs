//! The gRPC face of the order service.

use contracts::order::{
    order_service_server::OrderService, CreateOrderRequest, GetOrderRequest, Order as OrderMsg,
};
use platform::{
    grpc::{idempotency_key, store_status},
    ports::{StoreError, Tx},
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{NewOrder, Order, OrderId, OrderStatus},
    store::{OrderQuery, OrderWrite},
    transition::{now_ms, status_event},
    Ctx,
};

const SERVICE: &str = "order";

pub(crate) struct OrderApi {
    pub ctx: Ctx,
}

/// The contract's status for `s`.
fn proto_status(s: OrderStatus) -> contracts::order::OrderStatus {
    contracts::order::OrderStatus::from_api_name(s.as_str())
}

pub(crate) fn to_msg(o: &Order) -> OrderMsg {
    OrderMsg {
        order_id: o.order_id.clone(),
        customer_id: o.customer_id.clone(),
        item: o.item.clone(),
        amount_minor: o.amount_minor,
        currency: o.currency.clone(),
        status: proto_status(o.status) as i32,
        history: o.history.iter().map(|s| proto_status(*s) as i32).collect(),
        ad_id: o.ad_id.clone(),
        ad_version: o.ad_version,
    }
}

impl OrderApi {
    async fn read(&self, order_id: &str) -> Result<Order, Status> {
        self.ctx
            .infra
            .store
            .query(OrderQuery::Order {
                order_id: order_id.to_owned(),
            })
            .await
            .map_err(|e| store_status(SERVICE, e))?
            .map(|l| l.value)
            .ok_or_else(|| Status::not_found(format!("{SERVICE}: no order {order_id}")))
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<OrderMsg>, Status> {
        let caller = platform::trace::of_request(&request);
        platform::trace::serve("order.CreateOrder", caller, self.create(request)).await
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<OrderMsg>, Status> {
        let id = OrderId::parse(&request.into_inner().order_id)
            .map_err(|e| Status::invalid_argument(format!("{SERVICE}: {e}")))?;
        Ok(Response::new(to_msg(&self.read(id.as_str()).await?)))
    }
}

impl OrderApi {
    async fn create(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<OrderMsg>, Status> {
        let key = idempotency_key(SERVICE, &request)?;
        let _place = self.ctx.admission.enter()?;
        let r = request.into_inner();
        let new = NewOrder::parse(&r.customer_id, &r.item, r.amount_minor, &r.currency)
            .map_err(|e| Status::invalid_argument(format!("{SERVICE}: {e}")))?;
        platform::grpc::require_id(SERVICE, "ad_id", &r.ad_id)?;
        if r.ad_version < 1 {
            return Err(Status::invalid_argument(format!(
                "{SERVICE}: ad_version must be positive"
            )));
        }
        let store = &*self.ctx.infra.store;
        let by_request = OrderQuery::ByRequest {
            request_key: key.clone(),
        };
        if let Some(prev) = store
            .query(by_request.clone())
            .await
            .map_err(|e| store_status(SERVICE, e))?
        {
            return Ok(Response::new(to_msg(&prev.value)));
        }
        // A new order: only while the service can finish it (a shed request writes nothing).
        let shed_late = self.ctx.infra.mutants.shed_after_create;
        if !shed_late {
            self.ctx.admission.admit(&*self.ctx.infra.store).await?;
        }
        let order = Order {
            order_id: OrderId::from_random(platform::ids::random_u128()).to_string(),
            customer_id: new.customer_id,
            item: new.item,
            amount_minor: new.price.amount_minor(),
            currency: new.price.currency().to_string(),
            ad_id: r.ad_id,
            ad_version: r.ad_version,
            status: OrderStatus::Created,
            history: vec![OrderStatus::Created],
            status_since_ms: now_ms(),
            created_ms: now_ms(),
            reason: String::new(),
            trace: platform::trace::current_stored(),
        };
        let tx = Tx::new()
            .write(OrderWrite::Create {
                order: order.clone(),
                request_key: key.clone(),
            })
            .emit(status_event(&order));
        match store.commit(tx).await {
            Ok(()) => {
                self.ctx.outbox.notify();
                // The claim round picks the new order up (on this or another instance).
                self.ctx.claim_wake.notify_one();
                if shed_late {
                    self.ctx.admission.admit(&*self.ctx.infra.store).await?;
                }
                Ok(Response::new(to_msg(&order)))
            }
            Err(StoreError::Conflict { .. }) => {
                let prev = store
                    .query(by_request)
                    .await
                    .map_err(|e| store_status(SERVICE, e))?
                    .ok_or_else(|| {
                        Status::aborted(format!("{SERVICE}: concurrent create, retry"))
                    })?;
                Ok(Response::new(to_msg(&prev.value)))
            }
            Err(e) => Err(store_status(SERVICE, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_contract_value() {
        for s in crate::domain::OrderStatus::ALL {
            let p = proto_status(s);
            assert_ne!(p, contracts::order::OrderStatus::Unspecified, "{s:?}");
            assert_eq!(p.api_name(), s.as_str());
        }
    }
}
