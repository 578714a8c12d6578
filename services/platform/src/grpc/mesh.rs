//! gRPC between services over mutual TLS: the server side ([`serve`]) and the client side
//! (`connect`, used by [`super::LazyChannel`]). Plain when no [`Tls`] is given, and always in
//! the simulation (madsim-tonic has no TLS and no custom transports; see [`crate::tls`]).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tonic::transport::{Channel, Endpoint};

use crate::{tls::Tls, Shutdown};

/// Bound on a peer's TLS handshake; a peer still silent after it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on handshakes under way at once on one listener (further accepts wait).
pub const HANDSHAKES_MAX: usize = 256;

/// A service's gRPC router as every service builds it: its routes behind the metrics layer.
#[cfg(not(madsim))]
pub type ServiceRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<super::ServerMetricsLayer, tower::layer::util::Identity>,
>;

/// Serves `router` on `listen` until `shutdown`: over mutual TLS when `tls` is given (a
/// peer must present a certificate from its CA; a refused handshake is logged with the
/// reason and ends only that connection), plain otherwise.
#[cfg(not(madsim))]
pub async fn serve(
    router: ServiceRouter,
    listen: SocketAddr,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        router
            .serve_with_shutdown(listen, shutdown.into_wait())
            .await?;
        return Ok(());
    };
    tls.mesh_acceptor()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let accepting = tokio::spawn(secure::accept(listener, tls, tx, shutdown.clone()));
    let incoming = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, std::io::Error>(s), rx))
    });
    let served = router
        .serve_with_incoming_shutdown(incoming, shutdown.into_wait())
        .await;
    accepting.abort();
    served?;
    Ok(())
}

/// In the simulation every server is plain ([`Tls`] cannot be built there).
#[cfg(madsim)]
pub async fn serve<L>(
    router: tonic::transport::server::Router<L>,
    listen: SocketAddr,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if let Some(tls) = tls {
        tls.unreachable();
    }
    router
        .serve_with_shutdown(listen, shutdown.into_wait())
        .await?;
    Ok(())
}

/// Connects `endpoint`, over mutual TLS when `tls` is given.
#[cfg(not(madsim))]
pub(super) async fn connect(
    endpoint: &Endpoint,
    tls: Option<&Arc<Tls>>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        None => endpoint.connect().await,
        Some(tls) => {
            endpoint
                .connect_with_connector(secure::Connector { tls: tls.clone() })
                .await
        }
    }
}

#[cfg(madsim)]
pub(super) async fn connect(
    endpoint: &Endpoint,
    tls: Option<&Arc<Tls>>,
) -> Result<Channel, tonic::transport::Error> {
    if let Some(tls) = tls {
        tls.unreachable();
    }
    endpoint.connect().await
}

#[cfg(not(madsim))]
mod secure {
    use std::{
        future::Future,
        io,
        pin::Pin,
        sync::Arc,
        task::{Context, Poll},
    };

    use hyper_util::rt::TokioIo;
    use rustls::pki_types::ServerName;
    use tokio::{
        io::{AsyncRead, AsyncWrite, ReadBuf},
        net::{TcpListener, TcpStream},
        sync::mpsc,
    };
    use tonic::transport::server::{Connected, TcpConnectInfo};

    use super::{HANDSHAKES_MAX, HANDSHAKE_TIMEOUT};
    use crate::{tls::Tls, Shutdown};

    /// A peer's connection after its handshake.
    #[derive(Debug)]
    pub struct MeshStream(tokio_rustls::server::TlsStream<TcpStream>);

    impl Connected for MeshStream {
        type ConnectInfo = TcpConnectInfo;

        fn connect_info(&self) -> TcpConnectInfo {
            self.0.get_ref().0.connect_info()
        }
    }

    impl AsyncRead for MeshStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for MeshStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.0.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// Accepts connections until `shutdown`, each handshake in its own task (a slow peer
    /// holds up no other), and hands the ones that pass to the server through `tx`.
    pub async fn accept(
        listener: TcpListener,
        tls: Arc<Tls>,
        tx: mpsc::Sender<MeshStream>,
        shutdown: Shutdown,
    ) {
        let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
        while let Some((permit, stream, peer)) =
            crate::http::next_connection(&listener, &permits, &shutdown).await
        {
            let _ = stream.set_nodelay(true);
            let acceptor = match tls.mesh_acceptor() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "no mutual TLS configuration");
                    continue;
                }
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(MeshStream(s)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "refused a peer: TLS handshake failed");
                    }
                    Err(_) => tracing::warn!(%peer, "refused a peer: TLS handshake timed out"),
                }
            });
        }
    }

    /// Opens TLS connections to a service's instances for a tonic channel: presents this
    /// instance's certificate, checks the peer's against the CA and the URL's host.
    #[derive(Clone, Debug)]
    pub struct Connector {
        pub tls: Arc<Tls>,
    }

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    impl tower::Service<http::Uri> for Connector {
        type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, uri: http::Uri) -> Self::Future {
            let tls = self.tls.clone();
            Box::pin(async move {
                let host = uri
                    .host()
                    .ok_or_else(|| format!("{uri}: no host"))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let connector = tls.connector()?;
                let name = ServerName::try_from(host.clone())?;
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let stream = connector.connect(name, tcp).await?;
                Ok(TokioIo::new(stream))
            })
        }
    }
}
