//! The PSP's webhook: `POST /v1/psp/callbacks` with the outcome of a charge. The PSP may send
//! it late, before its own answer, or several times; only the first one for a pending
//! payment changes anything.

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use platform::{
    http::{ApiJson, Problem},
    ports::{StoreError, Tx},
};
use serde::Deserialize;

use crate::{
    store::{PaymentAnswer, PaymentQuery, PaymentStatus, PaymentWrite},
    worker::settle,
    Ctx,
};

/// What the PSP posts.
#[derive(Debug, Deserialize)]
pub(crate) struct Callback {
    /// The idempotency key the charge was made with (`charge-<payment key>`).
    pub idempotency_key: String,
    pub charge_id: String,
    /// `captured` or `declined`.
    pub status: String,
}

pub(crate) fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/psp/callbacks", post(callback))
        .with_state(ctx)
}

async fn callback(
    State(ctx): State<Ctx>,
    ApiJson(cb): ApiJson<Callback>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    if cb.status != "captured" && cb.status != "declined" {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            "status must be captured or declined",
        ));
    }
    let Some(key) = cb.idempotency_key.strip_prefix("charge-") else {
        return Err(Problem::not_found("not a charge of this service"));
    };
    let store = &*ctx.infra.store;
    for _ in 0..8 {
        let found = store
            .query(PaymentQuery::Payment {
                key: key.to_owned(),
            })
            .await
            .map_err(|e| Problem::unavailable(e.to_string()))?;
        let PaymentAnswer::Payment(Some(p)) = found else {
            return Err(Problem::not_found(format!("no payment {key}")));
        };
        if p.value.status != PaymentStatus::Pending {
            // A duplicate, or the answer got here first.
            return Ok((StatusCode::OK, Json(serde_json::json!({"applied": false}))));
        }
        let mut next = p.value;
        settle(&mut next, cb.charge_id.clone(), &cb.status);
        let tx = Tx::new().write(PaymentWrite::UpdatePayment {
            payment: next.clone(),
            version: p.version,
        });
        match store.commit(tx).await {
            Ok(()) => {
                ctx.work.notify_one();
                ctx.changes.publish(&next.order_id);
                return Ok((StatusCode::OK, Json(serde_json::json!({"applied": true}))));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(Problem::unavailable(e.to_string())),
        }
    }
    Err(Problem::unavailable("payment kept changing; retry"))
}
