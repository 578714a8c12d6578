//! HTTP/3 at the edge (feature `http3`, real world only): the same axum router served over
//! QUIC (quinn + h3) with the edge identity of a [`Tls`] (TLS 1.3, ALPN `h3`), and the
//! `Alt-Svc` header that tells HTTP/1.1 and HTTP/2 clients where to find it
//! ([`advertise_h3`]). A request body is read whole, up to [`H3_BODY_BYTES_MAX`] (413
//! beyond); a response body is streamed frame by frame (so SSE works). A renewed certificate
//! is used from the next connection.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{PeerAddr, HEADER_BYTES_MAX};
use crate::{shutdown::DRAIN_MAX, tls::Tls, Shutdown};

/// Bound on a request body over HTTP/3; a longer one is answered 413.
pub const H3_BODY_BYTES_MAX: usize = 1 << 20;

/// How long `Alt-Svc` tells a client to remember the HTTP/3 port.
pub const ALT_SVC_MAX_AGE_S: u32 = 86_400;

fn quic_config(tls: &Tls) -> anyhow::Result<quinn::ServerConfig> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.quic_config())?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// Serves `router` over HTTP/3 on UDP `addr` until `shutdown`, then closes every connection
/// (waiting at most [`DRAIN_MAX`] for them to acknowledge).
pub async fn serve_h3(
    addr: SocketAddr,
    router: Router,
    tls: Arc<Tls>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut current = tls.quic_config();
    let endpoint = quinn::Endpoint::server(quic_config(&tls)?, addr)
        .map_err(|e| anyhow::anyhow!("HTTP/3 on UDP {addr}: {e}"))?;
    loop {
        let incoming = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        // Renewed files: the next handshakes use them.
        let now = tls.quic_config();
        if !Arc::ptr_eq(&now, &current) {
            match quic_config(&tls) {
                Ok(c) => endpoint.set_server_config(Some(c)),
                Err(e) => tracing::warn!(error = %e, "renewed TLS files do not suit QUIC"),
            }
            current = now;
        }
        tokio::spawn(connection(incoming, router.clone(), shutdown.clone()));
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(DRAIN_MAX, endpoint.wait_idle()).await;
    Ok(())
}

async fn connection(incoming: quinn::Incoming, router: Router, shutdown: Shutdown) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            return;
        }
    };
    // The same bound on a request's head as over TCP (a longer one is refused by h3).
    let mut h3 = match h3::server::builder()
        .max_field_section_size(HEADER_BYTES_MAX as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            r = h3.accept() => r,
        };
        match next {
            Ok(Some(resolver)) => {
                let router = router.clone();
                tokio::spawn(async move {
                    if let Err(e) = request(resolver, peer, router).await {
                        tracing::debug!(%peer, error = %e, "HTTP/3 request ended with an error");
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 connection ended with an error");
                break;
            }
        }
    }
}

async fn request(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    peer: SocketAddr,
    router: Router,
) -> anyhow::Result<()> {
    let (req, mut stream) = resolver.resolve_request().await?;
    let mut body = BytesMut::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        if body.len() + chunk.remaining() > H3_BODY_BYTES_MAX {
            let problem = serde_json::json!({
                "type": "about:blank",
                "title": "Payload Too Large",
                "status": 413,
                "detail": format!("the request body exceeds {H3_BODY_BYTES_MAX} bytes"),
            });
            let head = http::Response::builder()
                .status(http::StatusCode::PAYLOAD_TOO_LARGE)
                .header(http::header::CONTENT_TYPE, "application/problem+json")
                .body(())?;
            stream.send_response(head).await?;
            stream.send_data(Bytes::from(problem.to_string())).await?;
            stream.finish().await?;
            return Ok(());
        }
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    let (parts, ()) = req.into_parts();
    let mut req = http::Request::from_parts(parts, axum::body::Body::from(body.freeze()));
    // Handlers may ask who connected, as over TCP (the gateway's login does).
    req.extensions_mut().insert(PeerAddr(peer));
    let response = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    stream
        .send_response(http::Response::from_parts(parts, ()))
        .await?;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !data.is_empty() {
                stream.send_data(data).await?;
            }
        }
    }
    stream.finish().await?;
    Ok(())
}

/// `router` with `Alt-Svc: h3=":port"` on every response: HTTP/1.1 and HTTP/2 clients learn
/// that HTTP/3 answers on UDP `port` of the same host.
pub fn advertise_h3(router: Router, port: u16) -> Router {
    let value = http::HeaderValue::try_from(format!("h3=\":{port}\"; ma={ALT_SVC_MAX_AGE_S}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("clear"));
    router.layer(axum::middleware::map_response(
        move |mut res: axum::response::Response| {
            let value = value.clone();
            async move {
                res.headers_mut().insert(http::header::ALT_SVC, value);
                res
            }
        },
    ))
}
