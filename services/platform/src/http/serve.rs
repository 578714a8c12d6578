use std::{future::Future, sync::Arc};

use axum::Router;
use hyper_util::{rt::TokioIo, server::conn::auto};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};
use tower::ServiceExt;

use crate::{
    shutdown::{Gate, DRAIN_MAX},
    tls::Tls,
    Shutdown,
};

/// The address of the client a request came from (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Bound on concurrently served connections per listener; further accepts wait.
pub const CONNECTIONS_MAX: usize = 1024;

/// Bound on a request's head (request line and headers) in bytes: a longer one is answered
/// 431 Request Header Fields Too Large and the connection closed. (HTTP/2: the header list.)
pub const HEADER_BYTES_MAX: usize = 32 * 1024;

/// Bound on the number of a request's headers (431 beyond).
pub const HEADERS_MAX: usize = 64;

/// Bound on the time a client takes to send a request's head, from its connection or its
/// previous request (so also on an idle keep-alive connection): the connection is closed
/// after it. Slow-header clients ("slowloris") cannot hold connections open for ever.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A hyper executor that spawns on the current runtime (real tokio, or madsim's).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// Serves `router` on `listener` until `shutdown`; HTTP/1.1 and HTTP/2 (h2c) on one port,
/// with HTTP/1.1 upgrades (WebSocket: a handler takes the connection with
/// `hyper::upgrade::on`).
/// On shutdown it stops accepting, lets open connections finish their requests (at most
/// [`DRAIN_MAX`]), then returns.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) {
    serve_with(listener, router, None, shutdown).await;
}

/// As [`serve`]; with `tls`, every connection is TLS first ([`Tls::edge_acceptor`]: TLS 1.2
/// and 1.3, ALPN `h2` and `http/1.1`), its handshake bounded by [`HEADER_READ_TIMEOUT`]; a
/// client that does not speak TLS is dropped.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
) {
    let open = Gate::default();
    accept(listener, router, tls, shutdown, &open).await;
    if !open.drained(DRAIN_MAX).await {
        tracing::warn!(
            connections = open.in_flight(),
            "connections still open after the drain limit"
        );
    }
}

async fn accept(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
    open: &Gate,
) {
    // Bounds open connections so a flood of clients cannot exhaust memory.
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    while let Some((permit, stream, peer)) = next_connection(&listener, &permits, &shutdown).await {
        let router = router.clone();
        let shutdown = shutdown.clone();
        let pass = open.enter();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _pass = pass;
            match tls {
                None => connection(stream, peer, router, shutdown).await,
                Some(tls) => secured(stream, peer, router, shutdown, &tls).await,
            }
        });
    }
}

/// The next connection `listener` accepts, with one of `permits` (waited for first), or
/// `None` at `shutdown`, which wins over a steady stream of connections. A failed accept is
/// logged and the next one awaited.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    permits: &Arc<tokio::sync::Semaphore>,
    shutdown: &Shutdown,
) -> Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::net::TcpStream,
    std::net::SocketAddr,
)> {
    let permit = tokio::select! {
        biased;
        _ = shutdown.wait() => return None,
        p = permits.clone().acquire_owned() => p.ok()?,
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return None,
            r = listener.accept() => match r {
                Ok((stream, peer)) => return Some((permit, stream, peer)),
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
        }
    }
}

/// Serves one TLS connection after its handshake.
#[cfg(not(madsim))]
async fn secured(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    shutdown: Shutdown,
    tls: &Tls,
) {
    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.edge_acceptor().accept(stream));
    let stream = tokio::select! {
        biased;
        _ = shutdown.wait() => return,
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    connection(stream, peer, router, shutdown).await;
}

/// No TLS in the simulation: a [`Tls`] cannot be built there.
#[cfg(madsim)]
async fn secured(
    _stream: tokio::net::TcpStream,
    _peer: std::net::SocketAddr,
    _router: Router,
    _shutdown: Shutdown,
    tls: &Tls,
) {
    tls.unreachable()
}

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 on one accepted connection until it ends or
/// `shutdown` (then gracefully).
async fn connection<S>(stream: S, peer: std::net::SocketAddr, router: Router, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        // Handlers may ask who connected (`Extension<PeerAddr>`).
        req.extensions_mut().insert(PeerAddr(peer));
        router.clone().oneshot(req)
    });
    let mut builder = auto::Builder::new(SpawnExecutor);
    builder
        .http1()
        .timer(super::RuntimeTimer)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HEADER_BYTES_MAX)
        .max_headers(HEADERS_MAX);
    builder
        .http2()
        .timer(super::RuntimeTimer)
        .max_header_list_size(HEADER_BYTES_MAX as u32);
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(super::io::FlushWritten::new(stream)),
        service,
    );
    tokio::pin!(conn);
    tokio::select! {
        biased;
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
    }
}
