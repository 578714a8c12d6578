//! The WebSocket endpoint, `GET /v1/notifications/ws`: the same sessions as SSE
//! ([`crate::session`]), framed as JSON text messages.
//!
//! - The access token (header or `?access_token=`) is checked at the handshake: a refused
//!   token gets its problem+json answer, never a 101.
//! - Resume with `?since=epoch:seq`; filters `?order=` and `?kind=` as for SSE.
//! - Server → client: `{"type":"position"|"update"|"reset", "id":"epoch:seq", …}`; idle
//!   time is filled with pings (the client's pongs are read and dropped).
//! - Close codes: 1000 after the client's close, 1001 on shutdown, 1008 for a client too far
//!   behind, 1009 for a client message over [`CLIENT_MESSAGE_BYTES_MAX`], 1011 when the log
//!   cannot be read (reconnect and resume).
//!
//! The upgrade is hyper's own (`hyper::upgrade::on`) and the framing tokio-tungstenite's
//! over it, not axum's `WebSocketUpgrade` (which spawns on a tokio it assumes): the same
//! code runs on tokio and in the simulation.

use axum::{
    body::Body,
    extract::{Query, Request, State as Extract},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use platform::http::Problem;
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Message,
    },
    WebSocketStream,
};

use crate::{
    http::{recipient, resume_and_filter, update_json, State, StreamParams},
    session::{CloseWhy, Frame, Session},
};

/// Bound on a message a client sends (it has nothing to say but pongs and its close).
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 4 * 1024;

fn bad_handshake(detail: &str) -> Problem {
    Problem::bad_request(format!("not a WebSocket handshake: {detail}"))
}

/// The `Sec-WebSocket-Accept` of a valid version-13 upgrade request.
fn accept_key(headers: &HeaderMap) -> Result<String, Problem> {
    let has = |name: header::HeaderName, value: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(value)))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(bad_handshake(
            "Connection: Upgrade and Upgrade: websocket are required",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err(bad_handshake("Sec-WebSocket-Version must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| bad_handshake("Sec-WebSocket-Key is missing"))?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// `frame` as a text message; `None` for what is not a message (keep-alive, close).
pub fn ws_text(frame: &Frame) -> Option<String> {
    let json = |v: serde_json::Value| v.to_string();
    match frame {
        Frame::Position(p) => Some(json(serde_json::json!({
            "type": "position", "id": p.to_string(),
        }))),
        Frame::Update { epoch, update } => Some(format!(
            "{{\"type\":\"update\",\"id\":\"{epoch}:{}\",\"update\":{}}}",
            update.seq,
            update_json(update)
        )),
        Frame::Reset { at, reason } => Some(json(serde_json::json!({
            "type": "reset", "id": at.to_string(), "reason": reason,
        }))),
        Frame::KeepAlive | Frame::Close { .. } => None,
    }
}

fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

/// The handler: checks the token and the handshake, answers 101, then runs the session
/// over the upgraded connection.
pub async fn ws(
    Extract(st): Extract<State>,
    Query(params): Query<StreamParams>,
    mut req: Request,
) -> Result<Response, Problem> {
    let headers = req.headers().clone();
    let user = recipient(&st, &headers, params.access_token.as_deref()).await?;
    let (resume, filter) = resume_and_filter(&headers, &params)?;
    let accept = accept_key(&headers)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let session = st.open_session(&user, resume, filter);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(CLIENT_MESSAGE_BYTES_MAX))
                    .max_frame_size(Some(CLIENT_MESSAGE_BYTES_MAX));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run(socket, session).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|_| Problem::internal())?,
    );
    Ok(response.into_response())
}

/// Sends the session's frames until it ends, the client closes, or the connection breaks.
async fn run<S>(socket: WebSocketStream<S>, mut session: Session)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut out, mut incoming) = socket.split();
    loop {
        let frame = tokio::select! {
            biased;
            m = incoming.next() => match m {
                // Pongs and anything else a client says are read and dropped.
                Some(Ok(Message::Close(_))) | None => {
                    let _ = out.send(close(CloseCode::Normal, "bye")).await;
                    return;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    let capacity = matches!(
                        e,
                        tokio_tungstenite::tungstenite::Error::Capacity(_)
                    );
                    if capacity {
                        let _ = out
                            .send(close(CloseCode::Size, "a client message is at most 4 KiB"))
                            .await;
                    }
                    return;
                }
            },
            f = session.next() => f,
        };
        let sent = match frame {
            None => return,
            Some(Frame::KeepAlive) => out.send(Message::Ping(Vec::new().into())).await,
            Some(Frame::Close { reason, why }) => {
                let code = match why {
                    CloseWhy::Shutdown => CloseCode::Away,
                    CloseWhy::TooSlow => CloseCode::Policy,
                    CloseWhy::Unavailable => CloseCode::Error,
                };
                let _ = out.send(close(code, &reason)).await;
                return;
            }
            Some(f) => match ws_text(&f) {
                Some(text) => out.send(Message::Text(text.into())).await,
                None => Ok(()),
            },
        };
        if sent.is_err() {
            return;
        }
    }
}
