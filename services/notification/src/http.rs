//! The client endpoints: `GET /v1/notifications/stream` (Server-Sent Events) and
//! `GET /v1/notifications` (one page of the feed, JSON), behind the same access-token check
//! as the gateway. Browsers cannot set headers on `EventSource` or `WebSocket`, so the token
//! may also come as `?access_token=`.
//!
//! The SSE body is our own stream (no framework keep-alive timer), so the same code runs on
//! tokio and in the simulation.

use std::{convert::Infallible, sync::Arc};

use auth::cache::{KeyCache, Rejected};
use axum::{
    extract::{Query, State as Extract},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use bytes::Bytes;
use platform::{changes::Changes, http::Problem, ports::Store, Shutdown};
use serde::{Deserialize, Serialize};

use crate::{
    session::{Filter, Frame, Limits, Position, Session},
    store::{NotificationSchema, Update},
};

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    pub store: Arc<dyn Store<NotificationSchema>>,
    pub changes: Changes,
    pub keys: Arc<KeyCache>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub mutants: platform::Mutants,
}

impl State {
    /// A session of `recipient`'s feed (registered for wake-ups at once).
    pub(crate) fn open_session(
        &self,
        recipient: &str,
        resume: Option<Position>,
        filter: Filter,
    ) -> Session {
        let session = Session::open(
            self.store.clone(),
            &self.changes,
            recipient,
            resume,
            filter,
            self.limits,
            self.shutdown.clone(),
        );
        if self.mutants.notify_without_replay {
            session.without_replay()
        } else {
            session
        }
    }
}

/// The routes. Web pages of any origin may read them (CORS): access is by bearer token,
/// never by cookie, so another origin gains nothing a token does not already give.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/v1/notifications/stream", get(stream).options(preflight))
        .route("/v1/notifications/ws", get(crate::ws::ws))
        .route("/v1/notifications", get(page).options(preflight))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
}

/// The answer to a CORS preflight: GET, with the token in `Authorization` and the resume
/// point in `Last-Event-ID`.
async fn preflight() -> impl IntoResponse {
    (
        axum::http::StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, last-event-id",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    )
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The recipient a request is for: the subject of its access token.
pub(crate) async fn recipient(
    st: &State,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<String, Problem> {
    let token = match (headers.get(header::AUTHORIZATION), query_token) {
        (Some(value), _) => value
            .to_str()
            .map_err(|_| "the Authorization header is not text")
            .and_then(auth::cache::bearer)
            .map_err(|e| Problem::unauthorized(Some("invalid_request"), e))?,
        (None, Some(t)) if !t.is_empty() => t,
        _ => {
            return Err(Problem::unauthorized(
                None,
                "this route needs an access token (Authorization: Bearer <token>, or \
                 ?access_token= where headers cannot be set)",
            ))
        }
    };
    match st.keys.verify(token).await {
        Ok(claims) => Ok(claims.sub),
        Err(Rejected::Unavailable) => Err(Problem::unavailable(
            "access tokens cannot be checked yet; retry",
        )),
        Err(Rejected::Invalid(e)) => {
            Err(Problem::unauthorized(Some("invalid_token"), e.to_string()))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamParams {
    /// The resume point `epoch:seq` (`Last-Event-ID` wins when both are given).
    pub since: Option<String>,
    /// Only updates about this order.
    pub order: Option<String>,
    /// Only these kinds, comma-separated.
    pub kind: Option<String>,
    pub access_token: Option<String>,
}

/// The resume point and filter of a request, or the problem with them.
pub fn resume_and_filter(
    headers: &HeaderMap,
    params: &StreamParams,
) -> Result<(Option<Position>, Filter), Problem> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| Problem::bad_request("Last-Event-ID is not text"))
        })
        .transpose()?
        .filter(|v| !v.is_empty());
    let resume = last_event_id
        .or(params.since.as_deref())
        .map(Position::parse)
        .transpose()
        .map_err(Problem::bad_request)?;
    let filter =
        Filter::new(params.order.clone(), params.kind.as_deref()).map_err(Problem::bad_request)?;
    Ok((resume, filter))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// An update as clients get it (JSON; `body` is the update's own JSON).
pub fn update_json(u: &Update) -> String {
    format!(
        "{{\"seq\":{},\"kind\":{},\"subject\":{},\"at_ms\":{},\"body\":{}}}",
        u.seq,
        json_string(&u.kind),
        json_string(&u.subject),
        u.created_ms,
        u.body
    )
}

/// `frame` as an SSE event.
pub fn sse_event(frame: &Frame) -> String {
    match frame {
        Frame::Position(p) => format!(
            "id: {p}\nevent: position\ndata: {{\"epoch\":{},\"seq\":{}}}\n\n",
            json_string(&p.epoch),
            p.seq
        ),
        Frame::Update { epoch, update } => format!(
            "id: {epoch}:{}\nevent: {}\ndata: {}\n\n",
            update.seq,
            update.kind,
            update_json(update)
        ),
        Frame::Reset { at, reason } => format!(
            "id: {at}\nevent: reset\ndata: {{\"epoch\":{},\"seq\":{},\"reason\":{}}}\n\n",
            json_string(&at.epoch),
            at.seq,
            json_string(reason)
        ),
        Frame::KeepAlive => ": keep-alive\n\n".into(),
        Frame::Close { reason, .. } => format!(
            "event: close\ndata: {{\"reason\":{}}}\n\n",
            json_string(reason)
        ),
    }
}

async fn stream(
    Extract(st): Extract<State>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let recipient = recipient(&st, &headers, params.access_token.as_deref()).await?;
    let (resume, filter) = resume_and_filter(&headers, &params)?;
    let session = st.open_session(&recipient, resume, filter);
    let hello = futures::stream::once(futures::future::ready(Ok::<_, Infallible>(Bytes::from(
        format!("retry: {}\n\n", st.limits.retry_ms),
    ))));
    let frames = futures::stream::unfold(session, |mut s| async move {
        let frame = s.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(sse_event(&frame))), s))
    });
    let mut response =
        axum::body::Body::from_stream(futures::StreamExt::chain(hello, frames)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering proxies (nginx) to pass events on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct PageParams {
    after: Option<i64>,
    limit: Option<u32>,
    access_token: Option<String>,
}

/// One page of a feed.
#[derive(Debug, Serialize)]
struct PageBody {
    epoch: Option<String>,
    first_seq: i64,
    last_seq: i64,
    updates: Vec<serde_json::Value>,
}

async fn page(
    Extract(st): Extract<State>,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<PageBody>, Problem> {
    let Query(params) = params.map_err(|e| {
        Problem::bad_request(format!(
            "after and limit are whole numbers: {}",
            e.body_text()
        ))
    })?;
    let recipient = recipient(&st, &headers, params.access_token.as_deref()).await?;
    let after = params.after.unwrap_or(0);
    let limit = params.limit.unwrap_or(50);
    if after < 0 || !(1..=500).contains(&limit) {
        return Err(Problem::bad_request(
            "after is 0 or more; limit is 1 to 500",
        ));
    }
    let page = crate::store::read_feed(&*st.store, &recipient, after, limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "feed read failed");
            Problem::unavailable("the notification log cannot be read now; retry")
        })?;
    Ok(Json(PageBody {
        epoch: page.epoch,
        first_seq: page.first_seq,
        last_seq: page.last_seq,
        updates: page
            .updates
            .iter()
            .filter_map(|u| serde_json::from_str(&update_json(u)).ok())
            .collect(),
    }))
}
