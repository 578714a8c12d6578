//! TLS at the edge and mutual TLS between services, with real handshakes on loopback: the
//! certificate authorities (ours, a foreign one) and the certificates (valid, expired) are
//! made here with rcgen and written to files, as the services read them.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use platform::{
    grpc::{LazyChannel, ServerMetricsLayer},
    metrics::Registry,
    tls::{Tls, TlsFiles},
    Shutdown,
};
#[path = "support/pki.rs"]
mod pki;

use pki::{ca, leaf, Ca};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, RootCertStore,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A folder of its own for one test's files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "platform-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// Writes an identity (and the CA, if given) as `name.crt`, `name.key`, `name-ca.crt`.
    fn identity(&self, name: &str, (cert, key): &(String, String), ca: Option<&Ca>) -> TlsFiles {
        let path = |f: String| self.0.join(f);
        write(&path(format!("{name}.crt")), cert);
        write(&path(format!("{name}.key")), key);
        if let Some(ca) = ca {
            write(&path(format!("{name}-ca.crt")), &ca.pem);
        }
        TlsFiles {
            cert: path(format!("{name}.crt")),
            key: path(format!("{name}.key")),
            ca: ca.map(|_| path(format!("{name}-ca.crt"))),
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path` through a temporary file and a rename, as certificate renewal
/// tools do (a reader never sees half a file).
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn client_builder(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
}

/// A client that trusts `ca` and presents `identity` (none: no client certificate).
fn client(ca: &Ca, identity: Option<&(String, String)>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let builder = client_builder(rustls::DEFAULT_VERSIONS).with_root_certificates(roots(ca));
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

type ClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<ClientStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Speaks HTTP/2 to a mesh server over TLS: `Ok` when the server answers the preface (its
/// SETTINGS), the error (a TLS alert, for a refused certificate) otherwise. With TLS 1.3 a
/// client learns that its certificate was refused only at its first read.
async fn h2_preface(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<(), String> {
    let mut s = handshake(addr, config).await.map_err(|e| e.to_string())?;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    match s.read(&mut buf).await {
        Ok(0) => Err("closed".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A mesh server with no routes (every call: Unimplemented), over mutual TLS with `tls`.
async fn mesh_server(tls: Arc<Tls>) -> (SocketAddr, platform::shutdown::ShutdownTrigger) {
    let addr = free_addr();
    let (trigger, shutdown) = Shutdown::new();
    let router = tonic::transport::Server::builder()
        .layer(ServerMetricsLayer::new(Registry::new()))
        .add_routes(tonic::service::Routes::default());
    tokio::spawn(platform::grpc::serve(router, addr, Some(tls), shutdown));
    // Ready when it accepts (the listener binds inside the spawned task).
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::task::yield_now().await;
    }
    (addr, trigger)
}

/// One gRPC call through a [`LazyChannel`] to a method the server does not have: its code
/// tells whether the call reached the server (Unimplemented) or not (Unavailable).
async fn call(addr: SocketAddr, tls: Option<Arc<Tls>>) -> tonic::Code {
    let channel = LazyChannel::new(&format!("http://{addr}"))
        .unwrap()
        .secured(tls);
    let r = channel
        .call(|ch| async move {
            let mut grpc = tonic::client::Grpc::new(ch);
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            grpc.unary(
                tonic::Request::new(()),
                http::uri::PathAndQuery::from_static("/test.Nothing/Call"),
                tonic::codec::ProstCodec::<(), ()>::default(),
            )
            .await
        })
        .await;
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn a_service_serves_a_peer_whose_certificate_comes_from_its_ca() {
    let dir = Dir::new();
    let ours = ca("marketplace test CA");
    let server = Arc::new(
        Tls::load(dir.identity("order", &leaf(&ours, "order", false), Some(&ours))).unwrap(),
    );
    let (addr, _stop) = mesh_server(server).await;
    let caller = Arc::new(
        Tls::load(dir.identity("gateway", &leaf(&ours, "gateway", false), Some(&ours))).unwrap(),
    );
    assert_eq!(call(addr, Some(caller)).await, tonic::Code::Unimplemented);
}

#[tokio::test]
async fn a_service_refuses_peers_without_a_certificate_with_an_expired_one_or_from_another_ca() {
    let dir = Dir::new();
    let ours = ca("marketplace test CA");
    let theirs = ca("someone else's CA");
    let server = Arc::new(
        Tls::load(dir.identity("order", &leaf(&ours, "order", false), Some(&ours))).unwrap(),
    );
    let (addr, _stop) = mesh_server(server).await;
    let good = leaf(&ours, "gateway", false);
    let expired = leaf(&ours, "old-gateway", true);
    let foreign = leaf(&theirs, "intruder", false);

    // The same handshake, certificate by certificate: the alert names the reason.
    assert_eq!(
        h2_preface(addr, client(&ours, Some(&good), &[b"h2"])).await,
        Ok(())
    );
    let none = h2_preface(addr, client(&ours, None, &[b"h2"]))
        .await
        .unwrap_err();
    assert!(none.contains("CertificateRequired"), "{none}");
    let old = h2_preface(addr, client(&ours, Some(&expired), &[b"h2"]))
        .await
        .unwrap_err();
    assert!(old.contains("CertificateExpired"), "{old}");
    let other = h2_preface(addr, client(&ours, Some(&foreign), &[b"h2"]))
        .await
        .unwrap_err();
    assert!(other.contains("UnknownCA"), "{other}");

    // Through the services' own channel nothing reaches the server (it would answer
    // Unimplemented): with TLS 1.3 a client learns of the refusal only after its side of the
    // handshake, so the call fails on its first read (Unknown) rather than at connect
    // (Unavailable); both are transient peer failures to the channel and its breaker.
    let refused =
        |code: tonic::Code| matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown);
    for identity in [&expired, &foreign] {
        let tls = Tls::load(dir.identity("caller", identity, Some(&ours))).unwrap();
        let code = call(addr, Some(Arc::new(tls))).await;
        assert!(refused(code), "{code:?}");
    }
    let plain = call(addr, None).await;
    assert!(refused(plain), "{plain:?}");
    let tls = Tls::load(dir.identity("caller", &good, Some(&ours))).unwrap();
    assert_eq!(
        call(addr, Some(Arc::new(tls))).await,
        tonic::Code::Unimplemented
    );
}

#[tokio::test]
async fn a_caller_refuses_a_server_whose_certificate_is_not_from_its_ca() {
    let dir = Dir::new();
    let ours = ca("marketplace test CA");
    let theirs = ca("someone else's CA");
    // An impostor: its certificate chains to another CA, though it trusts ours.
    let impostor = Arc::new(
        Tls::load(TlsFiles {
            ca: dir
                .identity("ours", &leaf(&ours, "x", false), Some(&ours))
                .ca,
            ..dir.identity("impostor", &leaf(&theirs, "order", false), None)
        })
        .unwrap(),
    );
    let (addr, _stop) = mesh_server(impostor).await;
    let caller = Arc::new(
        Tls::load(dir.identity("gateway", &leaf(&ours, "gateway", false), Some(&ours))).unwrap(),
    );
    assert_eq!(call(addr, Some(caller)).await, tonic::Code::Unavailable);
}

/// An edge server answering `GET /hello` with `hi`, over TLS with `tls`.
async fn edge_server(tls: Arc<Tls>) -> (SocketAddr, platform::shutdown::ShutdownTrigger) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
    tokio::spawn(platform::http::serve_with(
        listener,
        router,
        Some(tls),
        shutdown,
    ));
    (addr, trigger)
}

async fn get_hello(s: &mut ClientStream) -> String {
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_edge_speaks_tls_1_2_and_1_3_and_offers_h2_and_http_1_1() {
    let dir = Dir::new();
    let ours = ca("marketplace test CA");
    let edge =
        Arc::new(Tls::load(dir.identity("edge", &leaf(&ours, "edge", false), None)).unwrap());
    let (addr, _stop) = edge_server(edge).await;

    let mut s = handshake(addr, client(&ours, None, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let answer = get_hello(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hi"), "{answer}");

    let s = handshake(addr, client(&ours, None, &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let mut tls12 = client_builder(&[&rustls::version::TLS12])
        .with_root_certificates(roots(&ours))
        .with_no_client_auth();
    tls12.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut s = handshake(addr, Arc::new(tls12)).await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert!(get_hello(&mut s).await.starts_with("HTTP/1.1 200"));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out).await;
    assert!(
        !out.starts_with(b"HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = Dir::new();
    let ours = ca("marketplace test CA");
    let first = leaf(&ours, "edge", false);
    let files = dir.identity("edge", &first, None);
    let (addr, _stop) = edge_server(Arc::new(Tls::load(files.clone()).unwrap())).await;
    let served = |s: &ClientStream| s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };

    let s = handshake(addr, client(&ours, None, &[])).await.unwrap();
    assert_eq!(served(&s), der(&first.0));

    let renewed = leaf(&ours, "edge", false);
    dir.identity("edge", &renewed, None);
    let s = handshake(addr, client(&ours, None, &[])).await.unwrap();
    assert_eq!(
        served(&s),
        der(&renewed.0),
        "the renewed certificate is served"
    );

    // A key that does not match its certificate: the renewed pair stays in use.
    let other = leaf(&ours, "edge", false);
    write(&files.key, &other.1);
    let mut s = handshake(addr, client(&ours, None, &[])).await.unwrap();
    assert_eq!(served(&s), der(&renewed.0));
    assert!(get_hello(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[test]
fn files_that_do_not_load_are_refused_with_the_file_and_the_reason() {
    let dir = Dir::new();
    let ours = ca("marketplace test CA");
    let files = dir.identity("x", &leaf(&ours, "x", false), Some(&ours));
    let missing = Tls::load(TlsFiles {
        cert: dir.0.join("nope.crt"),
        ..files.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(missing.contains("nope.crt"), "{missing}");
    write(&files.cert, "not a certificate");
    let empty = Tls::load(files.clone()).unwrap_err().to_string();
    assert!(empty.contains("no certificate"), "{empty}");
    let edge_only = dir.identity("y", &leaf(&ours, "y", false), None);
    let tls = Tls::load(edge_only).unwrap();
    assert!(tls.mesh_acceptor().is_err() && tls.connector().is_err());
}
