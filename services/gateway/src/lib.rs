//! The API gateway: REST+JSON for clients on one port speaking HTTP/1.1 and HTTP/2 (h2c),
//! served by the platform's hyper loop so it runs unchanged in the simulation.
//!
//! - `POST /v1/orders` `{customer_id, item, amount_minor, currency}` → 201 with the order.
//!   An `Idempotency-Key` header makes a retried POST return the same order.
//! - `GET /v1/orders/{id}` → 200 with the order.
//!
//! Errors are `application/problem+json`: 400/415/422 for bad input, 404 for an unknown
//! order, 503 when a service behind the gateway cannot be reached.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use contracts::order::{
    order_service_client::OrderServiceClient, CreateOrderRequest, GetOrderRequest, Order,
};
use domain::{IdempotencyKey, NewOrder, OrderId};
use platform::{
    grpc::{self, LazyChannel},
    http::{ApiJson, Problem},
    Shutdown,
};
use serde::{Deserialize, Serialize};

/// Gateway settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC URL of the order service.
    pub order_url: String,
}

#[derive(Clone)]
struct AppState {
    order: Arc<LazyChannel>,
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderBody {
    pub customer_id: String,
    pub item: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// An order as clients see it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    pub item: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub history: Vec<String>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        OrderView {
            status: o.status().api_name().into(),
            history: o.history().map(|s| s.api_name().to_owned()).collect(),
            order_id: o.order_id,
            customer_id: o.customer_id,
            item: o.item,
            amount_minor: o.amount_minor,
            currency: o.currency,
        }
    }
}

/// The one place gRPC answers become HTTP answers (see `platform::errors`). Messages of
/// codes that describe the client's request pass through; anything else is logged here and
/// answered without internal text.
fn problem(status: tonic::Status) -> Problem {
    use tonic::Code::*;
    // The order service's hint when it sheds load (admission control), else 1 s.
    let retry_after_s = status
        .metadata()
        .get(platform::grpc::RETRY_AFTER_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(1, |s| s.clamp(1, 60));
    match status.code() {
        InvalidArgument | OutOfRange => Problem::unprocessable(status.message()),
        NotFound => Problem::not_found(status.message()),
        FailedPrecondition | Aborted | AlreadyExists => Problem::conflict(status.message()),
        ResourceExhausted => Problem::too_many_requests(
            "the marketplace is taking as many orders as it can finish; retry later",
            retry_after_s,
        ),
        Unauthenticated => Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "authentication required",
        ),
        PermissionDenied => Problem::new(StatusCode::FORBIDDEN, "Forbidden", "not allowed"),
        Unavailable | DeadlineExceeded | Cancelled => {
            tracing::warn!(code = ?status.code(), message = status.message(), "order service unavailable");
            Problem {
                retry_after_s: Some(retry_after_s),
                ..Problem::unavailable("the order service cannot take the order now; retry")
            }
        }
        Ok | Unknown | Internal | Unimplemented | DataLoss => {
            tracing::error!(code = ?status.code(), message = status.message(), "order service failed");
            Problem::internal()
        }
    }
}

/// The gateway's routes.
pub fn router(config: &Config) -> anyhow::Result<Router> {
    let state = AppState {
        order: Arc::new(LazyChannel::new(&config.order_url)?),
    };
    Ok(Router::new()
        .route("/v1/orders", post(create_order))
        .route("/v1/orders/:id", get(get_order))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(state))
}

async fn order_client(
    st: &AppState,
) -> Result<OrderServiceClient<tonic::transport::Channel>, Problem> {
    st.order
        .get()
        .await
        .map(OrderServiceClient::new)
        .map_err(problem)
}

async fn create_order(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrderBody>,
) -> Result<Response, Problem> {
    let key = match headers.get("idempotency-key") {
        None => platform::ids::uuid_v4().to_string(),
        Some(v) => v
            .to_str()
            .map_err(|_| domain::InvalidInput::IdempotencyKey)
            .and_then(IdempotencyKey::parse)
            .map_err(|e| Problem::bad_request(format!("Idempotency-Key: {e}")))?
            .as_str()
            .to_owned(),
    };
    let new = NewOrder::parse(
        &body.customer_id,
        &body.item,
        body.amount_minor,
        &body.currency,
    )
    .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let req = CreateOrderRequest {
        customer_id: new.customer_id,
        item: new.item,
        amount_minor: new.price.amount_minor(),
        currency: new.price.currency().to_string(),
    };
    let mut client = order_client(&st).await?;
    let order = client
        .create_order(grpc::request(req, Some(&key)))
        .await
        .inspect_err(|e| st.order.on_error(e))
        .map_err(problem)?
        .into_inner();
    let location = format!("/v1/orders/{}", order.order_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OrderView::from(order)),
    )
        .into_response())
}

async fn get_order(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    let id = OrderId::parse(&id)
        .map_err(|e| Problem::bad_request(e.to_string()))?
        .to_string();
    let mut client = order_client(&st).await?;
    let order = client
        .get_order(grpc::request(GetOrderRequest { order_id: id }, None))
        .await
        .inspect_err(|e| st.order.on_error(e))
        .map_err(problem)?
        .into_inner();
    Ok(Json(order.into()))
}

/// Serves the gateway on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let router = router(&config)?;
    tracing::info!(addr = ?listener.local_addr().ok(), "gateway up");
    platform::http::serve(listener, router, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: tonic::Status) -> (StatusCode, Option<String>, String) {
        let response = problem(status).into_response();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let p = body(response);
        (
            StatusCode::from_u16(p.status).unwrap_or_default(),
            retry_after,
            p.detail,
        )
    }

    fn body(response: Response) -> Problem {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .expect("body");
            serde_json::from_slice(&bytes).expect("problem+json")
        })
    }

    #[test]
    fn internal_failures_become_a_500_that_keeps_the_cause_inside() {
        let secret = "relation \"orders\" does not exist at 10.1.2.1";
        for code in [
            tonic::Code::Internal,
            tonic::Code::Unknown,
            tonic::Code::DataLoss,
        ] {
            let (status, _, detail) = answer(tonic::Status::new(code, secret));
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{code:?}");
            assert!(
                !detail.contains("orders") && !detail.contains("10.1"),
                "{detail}"
            );
        }
    }

    #[test]
    fn an_unreachable_order_service_is_a_503_with_retry_after_and_no_internal_text() {
        let (status, retry_after, detail) = answer(tonic::Status::unavailable(
            "connect: 10.1.3.21:50051 refused",
        ));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(!detail.contains("10.1"), "{detail}");
    }

    #[test]
    fn client_mistakes_keep_their_explanation() {
        let cases = [
            (
                tonic::Status::invalid_argument("order: amount_minor must be positive"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                tonic::Status::not_found("order: no order 5a0e"),
                StatusCode::NOT_FOUND,
            ),
            (
                tonic::Status::failed_precondition("order: already cancelled"),
                StatusCode::CONFLICT,
            ),
            (
                tonic::Status::resource_exhausted("busy"),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                tonic::Status::unauthenticated("no token"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                tonic::Status::permission_denied("not yours"),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (s, want) in cases {
            let message = s.message().to_owned();
            let (status, _, detail) = answer(s);
            assert_eq!(status, want, "{message}");
            if want.as_u16() == 422 || want.as_u16() == 404 || want.as_u16() == 409 {
                assert_eq!(detail, message);
            }
        }
    }
}
