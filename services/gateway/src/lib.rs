//! The API gateway: REST+JSON for clients on one port speaking HTTP/1.1 and HTTP/2 (h2c),
//! served by the platform's hyper loop so it runs unchanged in the simulation.
//!
//! Public routes:
//! - `POST /v1/users` `{email, password, display_name}` → 201 with the account.
//! - `POST /v1/sessions` `{email, password}` → 200 `{access_token, token_type, expires_in,
//!   refresh_token, user_id}`; 401 for a wrong pair, 429 with `Retry-After` after too many
//!   failures for the account or the client's address.
//! - `POST /v1/sessions/refresh` `{refresh_token}` → 200 with a new session (the token is
//!   spent); `POST /v1/sessions/logout` `{refresh_token}` → 204.
//! - `GET /.well-known/jwks.json` → the public keys access tokens are signed with.
//! - `GET /v1/search?q=&category=&region=&price_min=&price_max=&sort=&limit=&cursor=` →
//!   ACTIVE ads (see [`search`]).
//! - `GET /healthz`.
//!
//! Routes that need `Authorization: Bearer <access token>` (401 with `WWW-Authenticate`
//! otherwise):
//! - `GET /v1/users/me`, `PATCH /v1/users/me` `{display_name}` (`If-Match` optional, 412 on a
//!   stale version).
//! - `POST /v1/orders` `{ad_id, expected_price?}` → 201, the caller buys the ad at its
//!   current version's price (409 when `expected_price` differs from it, 422 for one's own
//!   ad); an `Idempotency-Key` header makes a retried POST return the same order.
//! - `GET /v1/orders/{id}` → 200 for the order's owner, 404 for anyone else.
//! - `POST /v1/ads`, `PUT`/`PATCH`/`DELETE /v1/ads/{id}` (see [`ads`]); `GET /v1/ads/{id}` is
//!   public, with `ETag` and `If-None-Match`.
//! - `POST /v1/ads/{id}/photos`, then an upload straight to object storage, then
//!   `POST /v1/ads/{id}/photos/{photo_id}/complete` (see [`photos`]); `GET
//!   /v1/photos/{id}` (public) redirects to the photo.
//!
//! - `POST /v1/reports` → 202 with `Location`; `GET /v1/reports/{id}` (the reporter's only;
//!   see [`reports`]).
//!
//! Bodies are at most [`BODY_BYTES_MAX`] (413 beyond).
//!
//! Errors are `application/problem+json`: 400/401/403/404/409/412/413/415/422/428/429 for the client's
//! mistakes, 503 with `Retry-After` when a service behind the gateway cannot be reached.

mod ads;
mod auth;
pub mod cache;
mod errors;
mod openapi;
mod orders;
mod photos;
mod reports;
mod search;
mod users;

use std::sync::Arc;

use axum::{
    routing::{get, post},
    Router,
};
use platform::{breaker::BreakerPolicy, grpc::LazyChannel, http::Problem, Mutants, Shutdown};

pub use ads::{etag, none_match, AdBody, AdPatch, AdView, Price};
pub use auth::{Caller, KeyCache};
pub use orders::{request_key, CreateOrderBody, OrderView};
pub use photos::{UploadBody, UploadView};
pub use reports::{ReportBody, ReportView};
pub use search::{SearchItem, SearchParams, SearchResults};
pub use users::{LoginBody, RegisterBody, SessionView, UserView};

/// Bound on a request body; a longer one is answered 413.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// Gateway settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC URLs of the order service's instances.
    pub order_url: String,
    /// gRPC URLs of the user service's instances.
    pub user_url: String,
    /// gRPC URLs of the ad service's instances.
    pub ad_url: String,
    /// gRPC URLs of the search service's instances.
    pub search_url: String,
    /// gRPC URLs of the media service's instances.
    pub media_url: String,
    /// gRPC URLs of the report service's instances.
    pub report_url: String,
    /// Deliberate faults for the simulation's checkers; default in production.
    pub mutants: Mutants,
    /// The instance's metrics.
    pub metrics: Arc<platform::metrics::Registry>,
    /// TLS for the gateway's clients (the public edge); `None`: plain HTTP.
    pub edge_tls: Option<Arc<platform::tls::Tls>>,
    /// Mutual TLS to the services behind it; `None`: plain.
    pub mesh_tls: Option<Arc<platform::tls::Tls>>,
    /// UDP address for HTTP/3 beside the TCP listener (needs `edge_tls` and the `http3`
    /// feature); every TCP answer then carries `Alt-Svc`.
    pub h3_listen: Option<std::net::SocketAddr>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    order: Arc<LazyChannel>,
    user: Arc<LazyChannel>,
    ad: Arc<LazyChannel>,
    search: Arc<LazyChannel>,
    media: Arc<LazyChannel>,
    report: Arc<LazyChannel>,
    keys: Arc<KeyCache>,
    cache: Arc<cache::AdCache>,
    mutants: Mutants,
}

/// The gateway's routes, its key cache (to keep fresh with [`KeyCache::keep_fresh`]) and its
/// ad card cache (to keep invalidated with [`cache::invalidate_from_log`]).
pub fn router(config: &Config) -> anyhow::Result<(Router, Arc<KeyCache>, Arc<cache::AdCache>)> {
    let breakers = if config.mutants.breaker_never_opens {
        BreakerPolicy {
            failures_to_open: u32::MAX,
            ..BreakerPolicy::default()
        }
    } else {
        BreakerPolicy::default()
    };
    let metrics = &config.metrics;
    let peer = |urls: &str, name: &str| {
        LazyChannel::with_policy(urls, breakers.clone())
            .map(|c| Arc::new(c.secured(config.mesh_tls.clone()).observed(metrics, name)))
    };
    let user = peer(&config.user_url, "user")?;
    let keys = Arc::new(KeyCache::new(::auth::cache::from_user_service(
        user.clone(),
    )));
    let ad_cache = Arc::new(cache::AdCache::new(config.mutants.cache_not_invalidated));
    let counted = ad_cache.clone();
    metrics.collect(move |out| {
        let (hits, misses) = counted.counts();
        let (page_hits, page_misses) = counted.page_counts();
        for (cache, result, n) in [
            ("ad", "hit", hits),
            ("ad", "miss", misses),
            ("search", "hit", page_hits),
            ("search", "miss", page_misses),
        ] {
            out.push(platform::metrics::Sample {
                name: "cache_requests_total",
                help: "Reads of the gateway's caches, by cache and result (hit or miss).",
                kind: "counter",
                labels: vec![
                    ("cache".to_owned(), cache.to_owned()),
                    ("result".to_owned(), result.to_owned()),
                ],
                value: n as f64,
            });
        }
    });
    let state = AppState {
        order: peer(&config.order_url, "order")?,
        user,
        ad: peer(&config.ad_url, "ad")?,
        search: peer(&config.search_url, "search")?,
        media: peer(&config.media_url, "media")?,
        report: peer(&config.report_url, "report")?,
        keys: keys.clone(),
        cache: ad_cache.clone(),
        mutants: config.mutants,
    };
    let router = Router::new()
        .route("/v1/users", post(users::register))
        .route("/v1/users/me", get(users::me).patch(users::update_me))
        .route("/v1/sessions", post(users::login))
        .route("/v1/sessions/refresh", post(users::refresh))
        .route("/v1/sessions/logout", post(users::logout))
        .route("/.well-known/jwks.json", get(users::jwks))
        .route("/v1/ads", post(ads::create))
        .route(
            "/v1/ads/:id",
            get(ads::get)
                .put(ads::put)
                .patch(ads::patch)
                .delete(ads::delete),
        )
        .route("/v1/ads/:id/photos", post(photos::create_upload))
        .route(
            "/v1/ads/:id/photos/:photo_id/complete",
            post(photos::complete),
        )
        .route("/v1/photos/:id", get(photos::get))
        .route("/v1/reports", post(reports::create))
        .route("/v1/reports/:id", get(reports::get))
        .route("/v1/search", get(search::search))
        .route("/v1/orders", post(orders::create))
        .route("/v1/orders/:id", get(orders::get))
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi_json))
        .route("/demo", get(demo_page))
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state);
    let router = platform::http::traced(platform::http::observed(router, config.metrics.clone()));
    Ok((router, keys, ad_cache))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The gateway runs", body = String)))]
pub(crate) async fn health() -> &'static str {
    "ok"
}

/// The OpenAPI document.
async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
}

/// A small page that logs in, places an order and follows its status live over SSE from the
/// notification service (the browser test drives it; `README.md` shows how to open it).
async fn demo_page() -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("demo.html"),
    )
}

pub use openapi::document as openapi_document;

type Serving = tokio::task::JoinHandle<anyhow::Result<()>>;

/// HTTP/3 beside the TCP edge when `config.h3_listen` asks for it: the router to serve over
/// TCP (with `Alt-Svc`) and the HTTP/3 server's task.
#[cfg(feature = "http3")]
fn http3(
    router: Router,
    config: &Config,
    shutdown: &Shutdown,
) -> anyhow::Result<(Router, Option<Serving>)> {
    let Some(addr) = config.h3_listen else {
        return Ok((router, None));
    };
    let tls = config
        .edge_tls
        .clone()
        .ok_or_else(|| anyhow::anyhow!("HTTP/3 needs TLS at the edge (EDGE_TLS_CERT_FILE)"))?;
    let task = tokio::spawn(platform::http::serve_h3(
        addr,
        router.clone(),
        tls,
        shutdown.clone(),
    ));
    Ok((
        platform::http::advertise_h3(router, addr.port()),
        Some(task),
    ))
}

#[cfg(not(feature = "http3"))]
fn http3(
    router: Router,
    config: &Config,
    _shutdown: &Shutdown,
) -> anyhow::Result<(Router, Option<Serving>)> {
    anyhow::ensure!(
        config.h3_listen.is_none(),
        "HTTP/3 was asked for, but this build has no `http3` feature"
    );
    Ok((router, None))
}

/// Serves the gateway on `listener` until `shutdown`.
/// `events` feeds the ad card cache's invalidations, consumed as `cache_group` (one group per
/// instance).
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    events: Arc<dyn platform::ports::EventLog>,
    cache_group: String,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (router, keys, ad_cache) = router(&config)?;
    let fresh = tokio::spawn(keys.keep_fresh(shutdown.clone().into_wait()));
    let invalidation = tokio::spawn(cache::invalidate_from_log(
        ad_cache,
        events,
        cache_group,
        shutdown.clone(),
    ));
    let (router, h3) = http3(router, &config, &shutdown)?;
    tracing::info!(addr = ?listener.local_addr().ok(), h3 = ?config.h3_listen, "gateway up");
    platform::http::serve_with(listener, router, config.edge_tls.clone(), shutdown).await;
    if let Some(h3) = h3 {
        let _ = h3.await;
    }
    let _ = fresh.await;
    let _ = invalidation.await;
    Ok(())
}
