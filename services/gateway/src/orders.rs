//! Orders: created for the caller, shown only to their owner.

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use contracts::ad::AdStatus;
use contracts::order::{
    order_service_client::OrderServiceClient, CreateOrderRequest, GetOrderRequest, Order,
};
use domain::{IdempotencyKey, NewOrder, OrderId};
use platform::{
    grpc,
    http::{ApiJson, Problem},
};
use serde::{Deserialize, Serialize};

use crate::{ads::Price, auth::Caller, errors::problem, AppState};

const SERVICE: &str = "order";

/// The body of `POST /v1/orders`: the ad to buy, and optionally the price the buyer saw
/// (the order is refused with 409 if the ad's price is another now).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderBody {
    #[schema(min_length = 1, max_length = 64)]
    pub ad_id: String,
    #[serde(default)]
    pub expected_price: Option<Price>,
}

/// An order as clients see it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    pub item: String,
    pub amount_minor: i64,
    pub currency: String,
    pub ad_id: String,
    pub ad_version: i64,
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
            ad_id: o.ad_id,
            ad_version: o.ad_version,
        }
    }
}

/// The client's `Idempotency-Key` (400 when malformed), or a fresh one when absent.
pub(crate) fn client_key(headers: &HeaderMap) -> Result<String, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(platform::ids::uuid_v4().to_string()),
        Some(v) => v
            .to_str()
            .map_err(|_| domain::InvalidInput::IdempotencyKey)
            .and_then(IdempotencyKey::parse)
            .map(|k| k.as_str().to_owned())
            .map_err(|e| Problem::bad_request(format!("Idempotency-Key: {e}"))),
    }
}

/// The order service's idempotency key of a create by `user_id` with the client's key
/// `client_key`: scoped to the user (two users' equal keys are two requests) and of fixed
/// length (the user id and 128 bits of the key's SHA-256).
pub fn request_key(user_id: &str, client_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(client_key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{user_id}/{hex}")
}

#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body = CreateOrderBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried POST return the same order")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The order, CREATED; its saga runs on", body = OrderView),
        (status = 404, description = "No such ad", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The ad is not for sale, or its price is not expected_price", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "At capacity (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 410, description = "The ad was banned by moderation", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrderBody>,
) -> Result<Response, Problem> {
    let key = client_key(&headers)?;
    let key = request_key(&caller.user_id, &key);
    let ad = crate::ads::visible(&st, &body.ad_id, Some(&caller)).await?;
    if ad.status() != AdStatus::Active {
        return Err(Problem::conflict("the ad is not for sale now"));
    }
    if ad.owner_id == caller.user_id {
        return Err(Problem::unprocessable("you cannot order your own ad"));
    }
    let fields = ad.fields.clone().unwrap_or_default();
    let price = Price {
        amount_minor: fields.price_minor,
        currency: fields.currency.clone(),
    };
    let charged = match body.expected_price {
        // The mutant charges what the client says it saw.
        Some(seen) if st.mutants.order_price_from_client => seen,
        Some(seen) if seen != price => {
            return Err(Problem::conflict(format!(
                "the ad's price is now {} {} (version {}); order again to accept it",
                price.amount_minor, price.currency, ad.version
            )))
        }
        _ => price,
    };
    let new = NewOrder::parse(
        &caller.user_id,
        &fields.title,
        charged.amount_minor,
        &charged.currency,
    )
    .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let req = CreateOrderRequest {
        customer_id: new.customer_id,
        item: new.item,
        amount_minor: new.price.amount_minor(),
        currency: new.price.currency().to_string(),
        ad_id: ad.ad_id,
        ad_version: ad.version,
    };
    let order = st
        .order
        .call(|ch| async move {
            OrderServiceClient::with_interceptor(ch, platform::trace::inject)
                .create_order(grpc::request(req, Some(&key)))
                .await
        })
        .await
        .map_err(|e| problem(SERVICE, e))?
        .into_inner();
    let location = format!("/v1/orders/{}", order.order_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OrderView::from(order)),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F-]{36}$", description = "The order's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not an order id", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the caller", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    let id = OrderId::parse(&id)
        .map_err(|e| Problem::bad_request(e.to_string()))?
        .to_string();
    let not_found = || Problem::not_found(format!("{SERVICE}: no order {id}"));
    let req = grpc::request(
        GetOrderRequest {
            order_id: id.clone(),
        },
        None,
    );
    let order = st
        .order
        .call(|ch| async move {
            OrderServiceClient::with_interceptor(ch, platform::trace::inject)
                .get_order(req)
                .await
        })
        .await
        .map_err(|e| match e.code() {
            tonic::Code::NotFound => not_found(),
            _ => problem(SERVICE, e),
        })?
        .into_inner();
    // Another user's order is answered exactly like a missing one: its existence is not
    // the caller's to learn.
    if order.customer_id != caller.user_id && !st.mutants.owner_check_skipped {
        return Err(not_found());
    }
    Ok(Json(order.into()))
}
