//! The whole stack with mutual TLS between its services: every gRPC call of an order's saga
//! (gateway → order → payment, delivery, notification → user) goes over TLS with a
//! certificate from the test CA, and a plain peer is refused.

use std::{sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

/// A CA and one service certificate for localhost / 127.0.0.1 in a fresh folder:
/// (folder, files).
fn identity() -> (PathGuard, platform::tls::TlsFiles) {
    let dir = std::env::temp_dir().join(format!("stack-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder for the certificates");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "stack test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "marketplace");
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("a key");
    let cert = leaf.signed_by(&key, &issuer).expect("the certificate");
    let files = platform::tls::TlsFiles {
        cert: dir.join("service.crt"),
        key: dir.join("service.key"),
        ca: Some(dir.join("ca.crt")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write");
    std::fs::write(&files.key, key.serialize_pem()).expect("write");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write");
    (PathGuard(dir), files)
}

struct PathGuard(std::path::PathBuf);

impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `addr` answers a plain HTTP/2 preface with its SETTINGS frame (a plain gRPC
/// server does; a TLS one answers with an alert or closes).
async fn answers_plain_h2(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 9];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => buf[3] == 0x04,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_delivered_with_every_service_behind_mutual_tls() {
    let (_dir, files) = identity();
    let tls = Arc::new(platform::tls::Tls::load(files).expect("the identity loads"));
    let stack = support::start(|s| s.mesh_tls = Some(tls.clone())).await;
    for service in ["order", "payment", "delivery", "user", "notification"] {
        let addr = support::listen(&stack.settings, service);
        assert!(
            !answers_plain_h2(addr).await,
            "{service} answers plain gRPC"
        );
    }
    let created = stack.place_order(Some("stack-tls-1")).await;
    let done = stack
        .await_order(&created.order_id, Duration::from_secs(60), |o| {
            o.status == "DELIVERED"
        })
        .await;
    assert_eq!(done.history.last().map(String::as_str), Some("DELIVERED"));

    // A gateway on TLS at the edge (the same identity), calling the services over mTLS: a
    // user reads the order over HTTPS with the CA as the only trust anchor (once the new
    // gateway has fetched the user service's signing keys, over mTLS too).
    let (edge, _stop) = support::gateway_beside(&stack, "tls", Some(tls)).await;
    let ca = std::fs::read(_dir.0.join("ca.crt")).expect("the CA");
    let path = format!("/v1/orders/{}", created.order_id);
    let auth = support::bearer(&stack.session);
    let started = tokio::time::Instant::now();
    let answer = loop {
        let answer = https_get(edge, &ca, &path, &auth).await;
        if answer.starts_with("HTTP/1.1 200") || started.elapsed() > Duration::from_secs(20) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"DELIVERED\""), "{answer}");
}

/// `GET path` over HTTPS (HTTP/1.1, ALPN) to `addr`, trusting only `ca` (PEM): the whole
/// answer.
async fn https_get(addr: std::net::SocketAddr, ca: &[u8], path: &str, auth: &str) -> String {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca).expect("PEM"))
        .expect("a root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut https = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("the edge's certificate is trusted");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    https.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.expect("read");
    answer
}
