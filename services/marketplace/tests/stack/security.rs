//! The HTTP edge's bounds on what a client may send, on raw connections to the real gateway
//! and notification service: a request head over `HEADER_BYTES_MAX` or with more than
//! `HEADERS_MAX` headers is answered 431; a client that never finishes its head is cut off
//! after `HEADER_READ_TIMEOUT`, and a long-lived response (an SSE stream) is not.
//! (Tokens, bodies over 64 KiB and internal error text are covered where each resource is
//! tested; other users' resources, all in one sweep, in `idor`.)

use std::time::Duration;

use platform::http::{HEADERS_MAX, HEADER_BYTES_MAX, HEADER_READ_TIMEOUT};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support;

/// Sends `head` on a fresh connection to `addr` and reads what comes back until the server
/// closes the connection (bounded).
async fn exchange(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(head).await.expect("send the head");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 30 s");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_with_431() {
    let stack = support::start(|_| {}).await;
    for service in ["gateway", "notification-http"] {
        let addr = support::listen(&stack.settings, service);
        // A head just under the bound is served.
        let fits = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(HEADER_BYTES_MAX / 2)
        );
        let answer = exchange(addr, fits.as_bytes()).await;
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 200 OK",
            "{service}: {answer}"
        );
        // One header longer than the whole bound.
        let long = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(HEADER_BYTES_MAX + 1)
        );
        let answer = exchange(addr, long.as_bytes()).await;
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 431"),
            "{service}, a {} byte header: {answer}",
            HEADER_BYTES_MAX + 1
        );
        // More headers than allowed, each short.
        let many: String = (0..=HEADERS_MAX)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect();
        let answer = exchange(
            addr,
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        )
        .await;
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 431"),
            "{service}, {} headers: {answer}",
            HEADERS_MAX + 2
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_head_is_cut_off_and_a_stream_is_not() {
    let stack = support::start(|_| {}).await;
    let gateway = support::listen(&stack.settings, "gateway");
    let notifications = support::listen(&stack.settings, "notification-http");
    // An SSE stream opened now outlives the head timeout: its response is under way.
    let mut stream = TcpStream::connect(notifications).await.expect("connect");
    stream
        .write_all(
            format!(
                "GET /v1/notifications/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                stack.session.access_token
            )
            .as_bytes(),
        )
        .await
        .expect("send");
    // Everything sent at once (the head, `retry:`, the position), so that later bytes can
    // only be frames sent later.
    let mut opened = Vec::new();
    while !String::from_utf8_lossy(&opened).contains("event: position") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("the stream answers")
            .expect("read");
        assert!(n > 0, "the stream closed at once");
        opened.extend_from_slice(&chunk[..n]);
    }
    let opened = String::from_utf8_lossy(&opened).into_owned();
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");

    // Half a request line, then nothing: the gateway closes the connection after the bound.
    let started = tokio::time::Instant::now();
    let mut slow = TcpStream::connect(gateway).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("send");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, slow.read_to_end(&mut rest)).await;
    let waited = started.elapsed();
    assert!(
        read.is_ok(),
        "a slow head held its connection for {waited:?} (bound {HEADER_READ_TIMEOUT:?})"
    );
    assert!(
        waited >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "cut off after {waited:?}, before the bound of {HEADER_READ_TIMEOUT:?}"
    );

    // The stream is still open: its next frame (a keep-alive) comes after the head timeout.
    let mut more = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut more))
        .await
        .expect("the stream goes on after the head timeout")
        .expect("read");
    assert!(n > 0, "the stream was closed");
    assert!(
        started.elapsed() > HEADER_READ_TIMEOUT,
        "the frame came before the head timeout passed"
    );
}
