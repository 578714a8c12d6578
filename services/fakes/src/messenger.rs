//! A fake messaging provider: e-mail, SMS and push behind one API, as aggregators offer.
//!
//! `POST /v1/messages` `{channel, to, subject, text, reference}` with an `Idempotency-Key`
//! header: the same key gets the same answer and delivers at most once. Faults: latency,
//! failures (503, nothing sent) and late answers (sent, but the answer comes after the
//! caller's timeout, which must retry with the same key). Every message it delivered is kept,
//! so a checker can tell a notification sent twice.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, http::HeaderMap, routing::post, Json, Router};
use platform::{
    http::{ApiJson, Problem},
    Shutdown,
};
use serde::{Deserialize, Serialize};

/// The channels the provider delivers on.
pub const CHANNELS: [&str; 3] = ["email", "sms", "push"];
/// Bound on a message's text, per channel: an e-mail body, a (multi-part) SMS, a push.
pub fn text_bytes_max(channel: &str) -> usize {
    match channel {
        "sms" => 640,
        "push" => 2048,
        _ => 64 * 1024,
    }
}

/// Behaviour of the fake provider.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MessengerConfig {
    /// Requests answered 503 (nothing sent), per mille.
    pub fail_per_mille: u32,
    /// Answers delayed by `late_ms` after sending, per mille.
    pub late_per_mille: u32,
    /// Delay of a normal answer.
    pub latency_ms: u64,
    /// Delay of a late answer.
    pub late_ms: u64,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        MessengerConfig {
            fail_per_mille: 50,
            late_per_mille: 20,
            latency_ms: 20,
            late_ms: 5_000,
        }
    }
}

/// A message to deliver.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// One of [`CHANNELS`].
    pub channel: String,
    /// The recipient's address (here: the user id).
    pub to: String,
    #[serde(default)]
    pub subject: String,
    pub text: String,
    /// The sender's reference of the message (the notification's key).
    #[serde(default)]
    pub reference: String,
}

/// The provider's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageAnswer {
    pub message_id: String,
    /// `sent`.
    pub status: String,
}

/// What the provider delivered.
#[derive(Debug, Default)]
pub struct Outbox {
    answers: BTreeMap<String, MessageAnswer>,
    /// Every message delivered, in order.
    pub delivered: Vec<MessageRequest>,
    /// Every call that asked for a valid message, answered or refused, with the
    /// `traceparent` it carried: `(sender's reference, traceparent)`.
    pub traced: Vec<(String, Option<String>)>,
}

impl Outbox {
    /// How many messages were delivered per sender's reference.
    pub fn by_reference(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for m in &self.delivered {
            *out.entry(m.reference.clone()).or_default() += 1;
        }
        out
    }
}

/// Shared handle to what the provider delivered.
pub type SharedOutbox = Arc<Mutex<Outbox>>;

#[derive(Clone)]
struct AppState {
    config: Arc<MessengerConfig>,
    outbox: SharedOutbox,
}

/// The provider's HTTP routes.
pub fn router(config: MessengerConfig, outbox: SharedOutbox) -> Router {
    Router::new()
        .route("/v1/messages", post(send))
        .with_state(AppState {
            config: Arc::new(config),
            outbox,
        })
}

/// Serves the fake provider on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: MessengerConfig,
    outbox: SharedOutbox,
    shutdown: Shutdown,
) {
    platform::http::serve(listener, router(config, outbox), shutdown).await;
}

async fn send(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MessageRequest>,
) -> Result<Json<MessageAnswer>, Problem> {
    let key = crate::idempotency_key(&headers)?;
    if !CHANNELS.contains(&req.channel.as_str()) {
        return Err(Problem::unprocessable("channel must be email, sms or push"));
    }
    if req.to.is_empty() || req.to.len() > 256 || req.subject.len() > 1024 {
        return Err(Problem::unprocessable(
            "to is 1 to 256 bytes and subject at most 1 KiB",
        ));
    }
    let max = text_bytes_max(&req.channel);
    if req.text.is_empty() || req.text.len() > max {
        return Err(Problem::unprocessable(format!(
            "text is 1 to {max} bytes on {}",
            req.channel
        )));
    }
    if let Ok(mut o) = st.outbox.lock() {
        o.traced
            .push((req.reference.clone(), crate::traceparent(&headers)));
    }
    tokio::time::sleep(Duration::from_millis(st.config.latency_ms)).await;
    if crate::per_mille() < st.config.fail_per_mille {
        return Err(Problem::unavailable("the provider is overloaded"));
    }
    let answer = {
        let mut o = st
            .outbox
            .lock()
            .map_err(|_| Problem::unavailable("outbox poisoned"))?;
        if let Some(a) = o.answers.get(&key) {
            a.clone()
        } else {
            let a = MessageAnswer {
                message_id: format!("msg_{}", o.answers.len() + 1),
                status: "sent".into(),
            };
            o.answers.insert(key, a.clone());
            o.delivered.push(req);
            a
        }
    };
    if crate::per_mille() < st.config.late_per_mille {
        tokio::time::sleep(Duration::from_millis(st.config.late_ms)).await;
    }
    Ok(Json(answer))
}
