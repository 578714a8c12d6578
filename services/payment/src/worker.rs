//! The worker that talks to the PSP for every payment with work left.

use fakes_api::{ChargeAnswer, ChargeBody, RefundAnswer, RefundBody};
use platform::{
    http::HttpClient,
    ports::{Claimed, StoreError, Tx},
    worker::{run_rounds, Round},
    Shutdown,
};

use crate::{
    store::{Payment, PaymentAnswer, PaymentQuery, PaymentStatus, PaymentWrite, PAYMENTS},
    Ctx,
};

/// Payments handled per round.
const BATCH_MAX: usize = 256;

/// The PSP's wire format (the contract of `POST /v1/charges` and `POST /v1/refunds`).
mod fakes_api {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize)]
    pub struct ChargeBody<'a> {
        pub order_id: &'a str,
        pub amount_minor: i64,
        pub currency: &'a str,
        /// Where the PSP posts the outcome as well (possibly more than once).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub callback_url: Option<&'a str>,
    }
    #[derive(Deserialize)]
    pub struct ChargeAnswer {
        pub charge_id: String,
        pub status: String,
    }
    #[derive(Serialize)]
    pub struct RefundBody<'a> {
        pub charge_id: &'a str,
    }
    #[derive(Deserialize)]
    pub struct RefundAnswer {
        pub status: String,
    }
}

/// Bound on one PSP call, however late the PSP has been answering.
const PSP_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(64);

pub(crate) async fn run(ctx: Ctx, shutdown: Shutdown) {
    let (poll, wake) = (ctx.config.worker_poll, ctx.work.clone());
    run_rounds("payment", poll, wake, shutdown, || async {
        Ok(if round(&ctx).await? > 0 {
            Round::Busy
        } else {
            Round::Idle
        })
    })
    .await;
}

/// One pass over the payments with work, [`platform::claims::WORK_CONCURRENCY_MAX`] at a
/// time; returns how many made progress.
async fn round(ctx: &Ctx) -> anyhow::Result<usize> {
    let claimed = ctx.liveness.work_items(PAYMENTS, BATCH_MAX).await?;
    let results = platform::claims::each_concurrently(claimed, |c| work_on(ctx, c)).await;
    let progressed = results.iter().filter(|r| matches!(r, Ok(true))).count();
    match results.into_iter().find_map(Result::err) {
        Some(e) if progressed == 0 => Err(e),
        _ => Ok(progressed),
    }
}

/// The client for the next PSP call of payment `key`: its timeout doubles with each call
/// that timed out in a row (up to [`PSP_WAIT_MAX`]), so a PSP that answers later than usual
/// is heard in the end instead of asked again and again. The outcome of a call that timed
/// out is unknown, not failed: the same idempotency key asks for it again.
///
/// Calls go through the PSP's breaker. A timeout counts against the PSP only once the wait
/// was the longest: before that it says the wait was short (the PSP may be slow, not
/// down), and a breaker opened on it would keep the longer waits from ever happening.
fn client_for(ctx: &Ctx, key: &str) -> HttpClient {
    let late = ctx
        .late
        .lock()
        .map_or(0, |m| m.get(key).copied().unwrap_or(0));
    let timeout = (ctx.config.psp_timeout * 2u32.pow(late.min(6))).min(PSP_WAIT_MAX);
    let client = HttpClient::new(timeout)
        .with_breaker(ctx.psp.clone())
        .observed(ctx.infra.metrics.clone(), "psp");
    if timeout < PSP_WAIT_MAX {
        client.timeouts_uncounted()
    } else {
        client
    }
}

/// Counts a timed-out call of payment `key`, or forgets its streak after an answer. A call
/// the PSP's open breaker kept back changes nothing.
fn note_answer<T>(ctx: &Ctx, key: &str, r: &anyhow::Result<T>) {
    use platform::http::HttpError;
    let error = r.as_ref().err().and_then(|e| e.downcast_ref::<HttpError>());
    if matches!(error, Some(HttpError::CircuitOpen(_))) {
        return;
    }
    if let Ok(mut m) = ctx.late.lock() {
        if matches!(error, Some(HttpError::Timeout(_))) {
            *m.entry(key.to_owned()).or_default() += 1;
        } else {
            m.remove(key);
        }
    }
}

/// Moves one claimed payment on; whether it progressed.
async fn work_on(ctx: &Ctx, c: Claimed) -> anyhow::Result<bool> {
    let store = &*ctx.infra.store;
    let PaymentAnswer::Payment(Some(v)) = store
        .query(PaymentQuery::Payment { key: c.key.clone() })
        .await?
    else {
        return Ok(false);
    };
    let client = client_for(ctx, &c.key);
    // The PSP call is a span of the trace of the Charge that made the payment.
    let trace = platform::trace::TraceContext::from_stored(&v.value.trace);
    let stepped = step(ctx, &client, v.value);
    let stepped = platform::trace::span("payment.psp", trace, stepped, |r| r.is_ok()).await;
    note_answer(ctx, &c.key, &stepped);
    let Some(next) = stepped? else {
        return Ok(false);
    };
    let tx = ctx.liveness.fence(Tx::new(), PAYMENTS, &c.key, c.token);
    let tx = tx.write(PaymentWrite::UpdatePayment {
        payment: next.clone(),
        version: v.version,
    });
    match store.commit(tx).await {
        Ok(()) => {
            ctx.changes.publish(&next.order_id);
            Ok(true)
        }
        // Refund raced us; the next round sees the new state.
        Err(StoreError::Conflict { .. }) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Applies the PSP's charge outcome (from its answer or its callback) to a pending payment.
pub(crate) fn settle(p: &mut Payment, charge_id: String, psp_status: &str) {
    p.charge_id = Some(charge_id);
    p.status = match (psp_status, p.refund_requested) {
        ("captured", false) => PaymentStatus::Captured,
        ("captured", true) => PaymentStatus::RefundPending,
        (_, false) => {
            p.reason = "declined by the payment provider".into();
            PaymentStatus::Declined
        }
        (_, true) => PaymentStatus::Cancelled,
    };
}

/// Calls the PSP for `p`; the payment's next state, or `None` if nothing changed.
async fn step(ctx: &Ctx, client: &HttpClient, mut p: Payment) -> anyhow::Result<Option<Payment>> {
    let base = &ctx.config.psp_url;
    match p.status {
        PaymentStatus::Pending => {
            let key = if ctx.infra.mutants.psp_call_without_idempotency_key {
                platform::ids::uuid_v4().to_string()
            } else {
                format!("charge-{}", p.key)
            };
            let callback_url = ctx.config.callback_url.as_deref();
            let body = ChargeBody {
                order_id: &p.order_id,
                amount_minor: p.amount_minor,
                currency: &p.currency,
                callback_url,
            };
            let a: ChargeAnswer = client
                .post_json(
                    &format!("{base}/v1/charges"),
                    &[("idempotency-key", &key)],
                    &body,
                )
                .await?;
            settle(&mut p, a.charge_id, &a.status);
            Ok(Some(p))
        }
        PaymentStatus::RefundPending => {
            let Some(charge_id) = p.charge_id.clone() else {
                p.status = PaymentStatus::Cancelled;
                return Ok(Some(p));
            };
            let key = format!("refund-{}", p.key);
            let a: RefundAnswer = client
                .post_json(
                    &format!("{base}/v1/refunds"),
                    &[("idempotency-key", &key)],
                    &RefundBody {
                        charge_id: &charge_id,
                    },
                )
                .await?;
            anyhow::ensure!(
                a.status == "refunded",
                "PSP answered refund with {}",
                a.status
            );
            p.status = PaymentStatus::Refunded;
            Ok(Some(p))
        }
        _ => Ok(None),
    }
}
