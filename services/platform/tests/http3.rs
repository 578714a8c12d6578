//! HTTP/3 at the edge (feature `http3`): a real QUIC client (quinn + h3) against
//! `http::serve_h3`, and the `Alt-Svc` header that advertises it. Run with
//! `cargo test -p platform --features http3 --test http3`.
#![cfg(all(feature = "http3", not(madsim)))]
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc};

use bytes::{Buf, Bytes};
use platform::{
    http::{advertise_h3, serve_h3, H3_BODY_BYTES_MAX},
    tls::{Tls, TlsFiles},
    Shutdown,
};
#[path = "support/pki.rs"]
mod pki;

use rustls::pki_types::{pem::PemObject, CertificateDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA (PEM) and edge files for localhost signed by it, in `dir`.
fn identity(dir: &std::path::Path) -> (String, TlsFiles) {
    let ca = pki::ca("http3 test CA");
    let (cert, key) = pki::leaf(&ca, "edge", false);
    std::fs::create_dir_all(dir).unwrap();
    let files = TlsFiles {
        cert: dir.join("edge.crt"),
        key: dir.join("edge.key"),
        ca: None,
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    (ca.pem, files)
}

fn router() -> axum::Router {
    axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi" }))
        .route(
            "/peer",
            axum::routing::get(
                |axum::Extension(platform::http::PeerAddr(peer)): axum::Extension<
                    platform::http::PeerAddr,
                >| async move { peer.ip().to_string() },
            ),
        )
        .route(
            "/echo",
            axum::routing::post(|body: Bytes| async move { body }),
        )
}

/// A free UDP port on loopback.
fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An HTTP/3 client trusting only `ca_pem`.
async fn client(
    addr: SocketAddr,
    ca_pem: &str,
) -> h3::client::SendRequest<h3_quinn::OpenStreams, Bytes> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    crypto.alpn_protocols = vec![b"h3".to_vec()];
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    )));
    // The server binds inside its task: retry the handshake until it answers.
    let mut conn = None;
    for _ in 0..100 {
        match endpoint.connect(addr, "localhost").unwrap().await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
    let conn = conn.expect("the HTTP/3 server answers");
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        drop(endpoint);
    });
    send
}

/// One request: (status, body).
async fn exchange(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    method: http::Method,
    path: &str,
    body: Option<Bytes>,
) -> (http::StatusCode, Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    if let Some(body) = body {
        stream.send_data(body).await.unwrap();
    }
    stream.finish().await.unwrap();
    let response = stream.recv_response().await.unwrap();
    let mut out = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        out.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    (response.status(), out)
}

#[tokio::test]
async fn the_edge_answers_over_http3_and_bounds_request_bodies() {
    let dir = std::env::temp_dir().join(format!("platform-http3-{}", std::process::id()));
    let (ca, files) = identity(&dir);
    let tls = Arc::new(Tls::load(files).unwrap());
    let addr = free_udp();
    let (_stop, shutdown) = Shutdown::new();
    tokio::spawn(serve_h3(addr, router(), tls, shutdown));
    let mut send = client(addr, &ca).await;

    let (status, body) = exchange(&mut send, http::Method::GET, "/hello", None).await;
    assert_eq!(
        (status, body.as_slice()),
        (http::StatusCode::OK, &b"hi"[..])
    );
    let payload = Bytes::from(vec![b'x'; 100_000]);
    let (status, body) = exchange(
        &mut send,
        http::Method::POST,
        "/echo",
        Some(payload.clone()),
    )
    .await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(body, payload.to_vec(), "a 100 kB body comes back whole");
    let too_big = Bytes::from(vec![b'x'; H3_BODY_BYTES_MAX + 1]);
    let (status, body) = exchange(&mut send, http::Method::POST, "/echo", Some(too_big)).await;
    assert_eq!(status, http::StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("exceeds"));
    // Handlers that ask who connected (the gateway's login) get the client's address.
    let (status, body) = exchange(&mut send, http::Method::GET, "/peer", None).await;
    assert_eq!(
        (status, body.as_slice()),
        (http::StatusCode::OK, &b"127.0.0.1"[..])
    );
    let (status, _) = exchange(&mut send, http::Method::GET, "/nowhere", None).await;
    assert_eq!(status, http::StatusCode::NOT_FOUND);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn http_1_1_answers_advertise_the_http3_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, shutdown) = Shutdown::new();
    tokio::spawn(platform::http::serve(
        listener,
        advertise_h3(router(), 8443),
        shutdown,
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("alt-svc: h3=\":8443\"; ma=86400"),
        "{answer}"
    );
}
