//! The PSP's webhook: `POST /v1/psp/callbacks` with the outcome of a charge. The PSP may send
//! it late, before its own answer, or several times; only the first one for a pending
//! payment changes anything.

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use platform::{
    http::{ApiJson, Problem},
    ports::{StoreError, Tx},
    retry::on_conflict,
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
    let applied = on_conflict("apply PSP callback", |_| async {
        let found = store
            .query(PaymentQuery::Payment {
                key: key.to_owned(),
            })
            .await?;
        let PaymentAnswer::Payment(Some(p)) = found else {
            return Ok(None);
        };
        if p.value.status != PaymentStatus::Pending {
            // A duplicate, or the answer got here first.
            return Ok(Some(false));
        }
        let mut next = p.value;
        settle(&mut next, cb.charge_id.clone(), &cb.status);
        let tx = Tx::new().write(PaymentWrite::UpdatePayment {
            payment: next.clone(),
            version: p.version,
        });
        store.commit(tx).await?;
        ctx.work.notify_one();
        ctx.changes.publish(&next.order_id);
        Ok(Some(true))
    })
    .await
    .map_err(store_problem)?;
    match applied {
        None => Err(Problem::not_found(format!("no payment {key}"))),
        Some(applied) => Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "applied": applied })),
        )),
    }
}

/// The one place store errors become this endpoint's answers: a retry can help (503), or it
/// is a bug (500, logged, its text kept inside).
fn store_problem(e: StoreError) -> Problem {
    if e.is_retriable() || matches!(e, StoreError::Conflict { .. }) {
        Problem::unavailable("the payment store is busy; retry")
    } else {
        tracing::error!(error = %e, "PSP callback failed");
        Problem::internal()
    }
}
