//! A fake courier API.
//!
//! `POST /v1/shipments` (with `Idempotency-Key`) books a shipment; its stage then advances
//! with time — ACCEPTED, PICKED_UP, IN_TRANSIT, DELIVERED — or ends FAILED, as configured.
//! `GET /v1/shipments/{id}` reads it; `POST /v1/shipments/{id}/cancel` cancels it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    routing::{get, post},
    Json, Router,
};
use platform::{
    http::{ApiJson, Problem},
    Shutdown,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Behaviour of the fake courier.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CourierConfig {
    /// Shipments that fail in transit, per mille.
    pub fail_per_mille: u32,
    /// Time spent in each stage before the next.
    pub stage_ms: u64,
    /// Delay of every answer.
    pub latency_ms: u64,
}

impl Default for CourierConfig {
    fn default() -> Self {
        CourierConfig {
            fail_per_mille: 100,
            stage_ms: 2_000,
            latency_ms: 20,
        }
    }
}

#[derive(Clone, Debug)]
struct Shipment {
    order_id: String,
    booked_at: Instant,
    fails: bool,
    cancelled: bool,
}

/// The courier's records; shared so checkers can inspect them.
#[derive(Debug, Default)]
pub struct Books {
    by_key: BTreeMap<String, String>,
    shipments: BTreeMap<String, Shipment>,
    /// Every booking, read and cancel of an order's shipment, with the `traceparent` it
    /// carried: `(order id, traceparent)`.
    pub traced: Vec<(String, Option<String>)>,
}

impl Books {
    /// Per order, each booking's fate: what it is or becomes when left alone (`DELIVERED`,
    /// `FAILED` or `CANCELLED`), in booking order.
    pub fn fates_by_order(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut ids: Vec<(&String, &Shipment)> = self.shipments.iter().collect();
        ids.sort_by_key(|(_, s)| s.booked_at);
        for (_, s) in ids {
            let fate = match (s.cancelled, s.fails) {
                (true, _) => "CANCELLED",
                (false, true) => "FAILED",
                (false, false) => "DELIVERED",
            };
            out.entry(s.order_id.clone()).or_default().push(fate.into());
        }
        out
    }

    /// Number of shipments booked per order (more than one is a double booking).
    pub fn bookings_by_order(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for s in self.shipments.values() {
            *out.entry(s.order_id.clone()).or_default() += 1;
        }
        out
    }
}

/// Shared handle to the courier's records.
pub type SharedBooks = Arc<Mutex<Books>>;

#[derive(Debug, Deserialize)]
pub struct BookRequest {
    pub order_id: String,
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShipmentView {
    pub shipment_id: String,
    pub order_id: String,
    /// ACCEPTED, PICKED_UP, IN_TRANSIT, DELIVERED, FAILED or CANCELLED.
    pub stage: String,
}

#[derive(Clone)]
struct AppState {
    config: Arc<CourierConfig>,
    books: SharedBooks,
}

fn view(config: &CourierConfig, id: &str, s: &Shipment) -> ShipmentView {
    let steps = s.booked_at.elapsed().as_millis() as u64 / config.stage_ms.max(1);
    let stage = if s.cancelled {
        "CANCELLED"
    } else {
        match steps {
            0 => "ACCEPTED",
            1 => "PICKED_UP",
            2 => "IN_TRANSIT",
            _ if s.fails => "FAILED",
            _ => "DELIVERED",
        }
    };
    ShipmentView {
        shipment_id: id.into(),
        order_id: s.order_id.clone(),
        stage: stage.into(),
    }
}

/// The courier's HTTP routes.
pub fn router(config: CourierConfig, books: SharedBooks) -> Router {
    Router::new()
        .route("/v1/shipments", post(book))
        .route("/v1/shipments/:id", get(read))
        .route("/v1/shipments/:id/cancel", post(cancel))
        .with_state(AppState {
            config: Arc::new(config),
            books,
        })
}

async fn book(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BookRequest>,
) -> Result<Json<ShipmentView>, Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .ok_or_else(|| Problem::bad_request("header Idempotency-Key (1..=128 chars) is required"))?
        .to_owned();
    if req.order_id.is_empty() || req.address.is_empty() {
        return Err(Problem::bad_request("order_id and address are required"));
    }
    let v = {
        let mut b = st
            .books
            .lock()
            .map_err(|_| Problem::unavailable("books poisoned"))?;
        let id = match b.by_key.get(&key) {
            Some(id) => id.clone(),
            None => {
                let id = format!("sh_{}", b.shipments.len() + 1);
                let fails = crate::per_mille() < st.config.fail_per_mille;
                b.shipments.insert(
                    id.clone(),
                    Shipment {
                        order_id: req.order_id,
                        booked_at: Instant::now(),
                        fails,
                        cancelled: false,
                    },
                );
                b.by_key.insert(key, id.clone());
                id
            }
        };
        let order_id = b.shipments[&id].order_id.clone();
        b.traced.push((order_id, crate::traceparent(&headers)));
        view(&st.config, &id, &b.shipments[&id])
    };
    tokio::time::sleep(Duration::from_millis(st.config.latency_ms)).await;
    Ok(Json(v))
}

async fn read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ShipmentView>, Problem> {
    let v = {
        let mut b = st
            .books
            .lock()
            .map_err(|_| Problem::unavailable("books poisoned"))?;
        let s = b
            .shipments
            .get(&id)
            .ok_or_else(|| Problem::not_found(format!("no shipment {id}")))?;
        let v = view(&st.config, &id, s);
        let order_id = s.order_id.clone();
        b.traced.push((order_id, crate::traceparent(&headers)));
        v
    };
    tokio::time::sleep(Duration::from_millis(st.config.latency_ms)).await;
    Ok(Json(v))
}

async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ShipmentView>, Problem> {
    let v = {
        let mut b = st
            .books
            .lock()
            .map_err(|_| Problem::unavailable("books poisoned"))?;
        let config = st.config.clone();
        let s = b
            .shipments
            .get_mut(&id)
            .ok_or_else(|| Problem::not_found(format!("no shipment {id}")))?;
        let current = view(&config, &id, s);
        if current.stage != "DELIVERED" && current.stage != "FAILED" {
            s.cancelled = true;
        }
        let v = view(&config, &id, s);
        let order_id = s.order_id.clone();
        b.traced.push((order_id, crate::traceparent(&headers)));
        v
    };
    tokio::time::sleep(Duration::from_millis(st.config.latency_ms)).await;
    Ok(Json(v))
}

/// Serves the courier on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: CourierConfig,
    books: SharedBooks,
    shutdown: Shutdown,
) {
    platform::http::serve(listener, router(config, books), shutdown).await;
}
