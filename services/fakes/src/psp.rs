//! A fake payment service provider.
//!
//! `POST /v1/charges` and `POST /v1/refunds` take an `Idempotency-Key` header: the same key
//! gets the same answer and moves money at most once, like real PSPs. Faults: declines,
//! latency, and "timeouts" — the charge is made but the answer comes too late for the caller,
//! which must retry with the same key to learn the outcome. When the charge names a
//! `callback_url`, the outcome is also posted there `callback_copies` times (duplicate
//! webhooks, as real PSPs send them).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use platform::{
    http::{ApiJson, Problem},
    Shutdown,
};
use serde::{Deserialize, Serialize};

/// Behaviour of the fake PSP.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PspConfig {
    /// Charges declined, per mille.
    pub decline_per_mille: u32,
    /// Answers delayed past the caller's timeout (after moving the money), per mille.
    pub timeout_per_mille: u32,
    /// Delay of a normal answer.
    pub latency_ms: u64,
    /// Delay of a "timed out" answer.
    pub timeout_latency_ms: u64,
    /// How many times the outcome is posted to the charge's `callback_url` (0: never).
    pub callback_copies: u32,
    /// Delay before the first callback and between copies.
    pub callback_delay_ms: u64,
}

impl Default for PspConfig {
    fn default() -> Self {
        PspConfig {
            decline_per_mille: 100,
            timeout_per_mille: 50,
            latency_ms: 20,
            timeout_latency_ms: 10_000,
            callback_copies: 2,
            callback_delay_ms: 300,
        }
    }
}

/// One money movement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub charge_id: String,
    pub order_id: String,
    /// Positive for a capture, negative for a refund.
    pub amount_minor: i64,
}

/// The PSP's books: answers by idempotency key, and every money movement.
#[derive(Debug, Default)]
pub struct Ledger {
    answers: BTreeMap<String, ChargeAnswer>,
    refunds: BTreeMap<String, RefundAnswer>,
    charges: BTreeMap<String, (String, i64, bool)>,
    /// Every capture and refund, in order.
    pub movements: Vec<Movement>,
    /// Every charge and refund call, with the `traceparent` it carried: `(order id,
    /// traceparent)`.
    pub traced: Vec<(String, Option<String>)>,
}

impl Ledger {
    /// Net money captured per order (captures minus refunds) and the number of captures.
    pub fn by_order(&self) -> BTreeMap<String, (i64, u32)> {
        let mut out: BTreeMap<String, (i64, u32)> = BTreeMap::new();
        for m in &self.movements {
            let e = out.entry(m.order_id.clone()).or_default();
            e.0 += m.amount_minor;
            if m.amount_minor > 0 {
                e.1 += 1;
            }
        }
        out
    }
}

/// Shared handle to the PSP's books.
pub type SharedLedger = Arc<Mutex<Ledger>>;

#[derive(Debug, Deserialize)]
pub struct ChargeRequest {
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Where to post the outcome as well.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// The webhook body the PSP posts to a charge's `callback_url`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallbackBody {
    pub idempotency_key: String,
    pub charge_id: String,
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChargeAnswer {
    pub charge_id: String,
    /// `captured` or `declined`.
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct RefundRequest {
    pub charge_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefundAnswer {
    pub charge_id: String,
    /// `refunded`.
    pub status: String,
}

#[derive(Clone)]
struct AppState {
    config: Arc<PspConfig>,
    ledger: SharedLedger,
}

/// The PSP's HTTP routes.
pub fn router(config: PspConfig, ledger: SharedLedger) -> Router {
    Router::new()
        .route("/v1/charges", post(charge))
        .route("/v1/refunds", post(refund))
        .with_state(AppState {
            config: Arc::new(config),
            ledger,
        })
}

async fn answer_delay(config: &PspConfig) {
    let delay = if crate::per_mille() < config.timeout_per_mille {
        config.timeout_latency_ms
    } else {
        config.latency_ms
    };
    tokio::time::sleep(Duration::from_millis(delay)).await;
}

async fn charge(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChargeRequest>,
) -> Result<Json<ChargeAnswer>, Problem> {
    let key = crate::idempotency_key(&headers)?;
    if req
        .callback_url
        .as_ref()
        .is_some_and(|u| u.len() > 512 || !u.starts_with("http://"))
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            "callback_url must be an http:// URL of at most 512 bytes",
        ));
    }
    if req.amount_minor <= 0 || req.order_id.is_empty() || req.currency.len() != 3 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            "invalid charge",
        ));
    }
    let (answer, fresh) = {
        let mut l = st
            .ledger
            .lock()
            .map_err(|_| Problem::unavailable("ledger poisoned"))?;
        l.traced
            .push((req.order_id.clone(), crate::traceparent(&headers)));
        if let Some(a) = l.answers.get(&key) {
            (a.clone(), false)
        } else {
            let charge_id = format!("ch_{}", l.answers.len() + 1);
            let declined = crate::per_mille() < st.config.decline_per_mille;
            let status = if declined { "declined" } else { "captured" };
            if !declined {
                l.movements.push(Movement {
                    charge_id: charge_id.clone(),
                    order_id: req.order_id.clone(),
                    amount_minor: req.amount_minor,
                });
                l.charges.insert(
                    charge_id.clone(),
                    (req.order_id.clone(), req.amount_minor, false),
                );
            }
            let a = ChargeAnswer {
                charge_id,
                status: status.into(),
            };
            l.answers.insert(key.clone(), a.clone());
            (a, true)
        }
    };
    if let (true, Some(url)) = (fresh, req.callback_url) {
        let body = CallbackBody {
            idempotency_key: key,
            charge_id: answer.charge_id.clone(),
            status: answer.status.clone(),
        };
        let config = &st.config;
        tokio::spawn(send_callbacks(
            url,
            body,
            config.callback_copies,
            config.callback_delay_ms,
        ));
    }
    answer_delay(&st.config).await;
    Ok(Json(answer))
}

/// Posts `body` to `url` `copies` times, `delay_ms` apart; failures are dropped, like a
/// webhook whose receiver is down.
async fn send_callbacks(url: String, body: CallbackBody, copies: u32, delay_ms: u64) {
    let client = platform::http::HttpClient::new(Duration::from_secs(2));
    for _ in 0..copies {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if let Err(e) = client
            .post_json::<_, serde_json::Value>(&url, &[], &body)
            .await
        {
            tracing::debug!(error = %e, "callback not delivered");
        }
    }
}

async fn refund(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RefundRequest>,
) -> Result<Json<RefundAnswer>, Problem> {
    let key = crate::idempotency_key(&headers)?;
    let answer = {
        let mut l = st
            .ledger
            .lock()
            .map_err(|_| Problem::unavailable("ledger poisoned"))?;
        if let Some((order_id, _, _)) = l.charges.get(&req.charge_id) {
            let order_id = order_id.clone();
            l.traced.push((order_id, crate::traceparent(&headers)));
        }
        if let Some(a) = l.refunds.get(&key) {
            a.clone()
        } else {
            let Some((order_id, amount, refunded)) = l.charges.get(&req.charge_id).cloned() else {
                return Err(Problem::not_found(format!(
                    "no captured charge {}",
                    req.charge_id
                )));
            };
            if !refunded {
                l.movements.push(Movement {
                    charge_id: req.charge_id.clone(),
                    order_id: order_id.clone(),
                    amount_minor: -amount,
                });
                l.charges
                    .insert(req.charge_id.clone(), (order_id, amount, true));
            }
            let a = RefundAnswer {
                charge_id: req.charge_id,
                status: "refunded".into(),
            };
            l.refunds.insert(key, a.clone());
            a
        }
    };
    answer_delay(&st.config).await;
    Ok(Json(answer))
}

/// Serves the PSP on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: PspConfig,
    ledger: SharedLedger,
    shutdown: Shutdown,
) {
    platform::http::serve(listener, router(config, ledger), shutdown).await;
}
