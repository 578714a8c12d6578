//! The gRPC face of the payment service.

use std::{pin::Pin, sync::Arc, time::Duration};

use contracts::payment::{
    payment_service_server::PaymentService, ChargeRequest, Payment as PaymentMsg, PaymentRef,
    RefundRequest,
};
use futures::Stream;
use platform::{
    changes::status_stream,
    grpc::{idempotency_key, require_id, store_status},
    ports::{Store, StoreError, Tx},
    retry::on_conflict,
};
use tonic::{Request, Response, Status};

use crate::{
    store::{
        aggregate, OrderPayments, Payment, PaymentAnswer, PaymentQuery, PaymentStatus, PaymentWrite,
    },
    Ctx, PaymentSchema,
};

const SERVICE: &str = "payment";
/// How long one WatchPayment stream lives before the client must re-open it.
const WATCH_DURATION_MAX: Duration = Duration::from_secs(120);

pub(crate) struct PaymentApi {
    pub ctx: Ctx,
}

/// An order's payments.
async fn order_of(
    store: &dyn Store<PaymentSchema>,
    order_id: &str,
) -> Result<Option<OrderPayments>, StoreError> {
    let q = PaymentQuery::Order {
        order_id: order_id.to_owned(),
    };
    match store.query(q).await? {
        PaymentAnswer::Order(o) => Ok(o),
        _ => Err(StoreError::Fatal(
            "payment store answered another query".into(),
        )),
    }
}

impl PaymentApi {
    async fn order(&self, order_id: &str) -> Result<Option<OrderPayments>, Status> {
        order_of(&*self.ctx.infra.store, order_id)
            .await
            .map_err(|e| store_status(SERVICE, e))
    }

    async fn payment_exists(&self, key: &str) -> Result<bool, Status> {
        let q = PaymentQuery::Payment {
            key: key.to_owned(),
        };
        match self.ctx.infra.store.query(q).await {
            Ok(PaymentAnswer::Payment(p)) => Ok(p.is_some()),
            Ok(_) => Err(Status::internal(format!(
                "{SERVICE}: unexpected store answer"
            ))),
            Err(e) => Err(store_status(SERVICE, e)),
        }
    }

    async fn view(&self, order_id: &str) -> Result<PaymentMsg, Status> {
        let order = self.order(order_id).await?.ok_or_else(|| {
            Status::not_found(format!("{SERVICE}: no payment for order {order_id}"))
        })?;
        let (status, reason) = aggregate(&order);
        let first = order.payments.first().map(|p| &p.value);
        Ok(PaymentMsg {
            order_id: order_id.to_owned(),
            amount_minor: first.map_or(0, |p| p.amount_minor),
            currency: first.map(|p| p.currency.clone()).unwrap_or_default(),
            status: contracts::payment::PaymentStatus::from_api_name(status.as_str()) as i32,
            reason,
        })
    }
}

impl PaymentApi {
    async fn charge_in_span(
        &self,
        request: Request<ChargeRequest>,
    ) -> Result<Response<PaymentMsg>, Status> {
        let key = idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        domain::Money::parse(req.amount_minor, &req.currency)
            .map_err(|e| Status::invalid_argument(format!("{SERVICE}: {e}")))?;
        let store = &*self.ctx.infra.store;
        if !self.payment_exists(&key).await? {
            let order = self.order(&req.order_id).await?;
            let (expected, refund_requested) = match &order {
                Some(o) => (Some(o.version), o.refund_requested),
                None => (None, false),
            };
            let payment = Payment {
                key: key.clone(),
                order_id: req.order_id.clone(),
                amount_minor: req.amount_minor,
                currency: req.currency.clone(),
                status: PaymentStatus::Pending,
                charge_id: None,
                refund_requested,
                reason: String::new(),
                trace: platform::trace::current_stored(),
            };
            // The order's row is re-written (same flag) so that a concurrent Refund, which
            // bumps it too, serialises with this charge.
            let tx = Tx::new()
                .write(PaymentWrite::PutOrder {
                    order_id: req.order_id.clone(),
                    refund_requested,
                    expected,
                })
                .write(PaymentWrite::InsertPayment(payment));
            match store.commit(tx).await {
                Ok(()) => {
                    self.ctx.work.notify_one();
                    self.ctx.changes.publish(&req.order_id);
                }
                // A concurrent retry with the same key won; its payment stands.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(store_status(SERVICE, e)),
            }
        }
        Ok(Response::new(self.view(&req.order_id).await?))
    }

    async fn refund_in_span(
        &self,
        request: Request<RefundRequest>,
    ) -> Result<Response<PaymentMsg>, Status> {
        let _key = idempotency_key(SERVICE, &request)?;
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        let store = &*self.ctx.infra.store;
        // A concurrent Charge or worker update may win the race: re-read and try again.
        on_conflict("refund", |_| async {
            let (expected, payments) = match order_of(store, &req.order_id).await? {
                Some(o) => (Some(o.version), o.payments),
                None => (None, Vec::new()),
            };
            let mut tx = Tx::new().write(PaymentWrite::PutOrder {
                order_id: req.order_id.clone(),
                refund_requested: true,
                expected,
            });
            for p in payments {
                let mut pay = p.value;
                let next = match pay.status {
                    PaymentStatus::Captured => PaymentStatus::RefundPending,
                    s => s,
                };
                if pay.refund_requested && next == pay.status {
                    continue;
                }
                pay.refund_requested = true;
                pay.status = next;
                tx = tx.write(PaymentWrite::UpdatePayment {
                    payment: pay,
                    version: p.version,
                });
            }
            store.commit(tx).await
        })
        .await
        .map_err(|e| store_status(SERVICE, e))?;
        self.ctx.work.notify_one();
        self.ctx.changes.publish(&req.order_id);
        Ok(Response::new(self.view(&req.order_id).await?))
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn charge(
        &self,
        request: Request<ChargeRequest>,
    ) -> Result<Response<PaymentMsg>, Status> {
        let caller = platform::trace::of_request(&request);
        platform::trace::serve("payment.Charge", caller, self.charge_in_span(request)).await
    }

    async fn refund(
        &self,
        request: Request<RefundRequest>,
    ) -> Result<Response<PaymentMsg>, Status> {
        let caller = platform::trace::of_request(&request);
        platform::trace::serve("payment.Refund", caller, self.refund_in_span(request)).await
    }

    async fn get_payment(
        &self,
        request: Request<PaymentRef>,
    ) -> Result<Response<PaymentMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        Ok(Response::new(self.view(&req.order_id).await?))
    }

    type WatchPaymentStream =
        Pin<Box<dyn Stream<Item = Result<PaymentMsg, Status>> + Send + 'static>>;

    async fn watch_payment(
        &self,
        request: Request<PaymentRef>,
    ) -> Result<Response<Self::WatchPaymentStream>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "order_id", &req.order_id)?;
        // Subscribe before the first read: no change between the two is missed.
        let subscription = self.ctx.changes.subscribe(&req.order_id);
        let first = self.view(&req.order_id).await?;
        let api = Arc::new(PaymentApi {
            ctx: self.ctx.clone(),
        });
        let order_id = req.order_id;
        let read = move || {
            let (api, order_id) = (api.clone(), order_id.clone());
            async move { api.view(&order_id).await }
        };
        Ok(Response::new(status_stream(
            subscription,
            first,
            read,
            |p: &PaymentMsg| is_final(p.status()),
            WATCH_DURATION_MAX,
        )))
    }
}

/// Whether a payment's status no longer changes by itself.
fn is_final(status: contracts::payment::PaymentStatus) -> bool {
    use contracts::payment::PaymentStatus::*;
    matches!(status, Captured | Declined | Refunded | Cancelled)
}
