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
    let stack = support::start(|s| s.mesh_tls = Some(tls)).await;
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
}
