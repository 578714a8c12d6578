use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::support;

/// POSTs an order with `key`; returns status, `Retry-After`, content type and body.
async fn post_order(stack: &support::Stack, key: &str) -> (u16, Option<String>, String, String) {
    let addr = support::listen(&stack.settings, "gateway");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let body = stack.order_body();
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v1/orders")
        .header("host", "gateway")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .header("authorization", support::bearer(&stack.session))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("answer");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        retry_after,
        content_type.unwrap_or_default(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_beyond_the_in_flight_limit_are_refused_with_429_and_retry_after_and_create_nothing()
{
    let stack = support::start(|s| {
        s.order_limits.sagas_in_flight_max = 2;
        // Slow shipments keep the accepted orders in flight for a few seconds.
        s.courier.stage_ms = 1_000;
    })
    .await;
    for key in ["admit-1", "admit-2"] {
        let (status, _, _, body) = post_order(&stack, key).await;
        assert_eq!(status, 201, "{key}: {body}");
    }
    let (status, retry_after, content_type, body) = post_order(&stack, "admit-3").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after));
    let problem: serde_json::Value = serde_json::from_str(&body).expect("problem+json");
    assert_eq!(problem["status"], 429);

    // A retry of an accepted order is answered whatever the load: it is no new work.
    let (status, _, _, body) = post_order(&stack, "admit-1").await;
    assert!(status == 200 || status == 201, "{status}: {body}");

    // Once the accepted orders end, the refused request goes through, and it is the first
    // and only order its key made: the refusal created nothing.
    let started = tokio::time::Instant::now();
    let created = loop {
        let (status, _, _, body) = post_order(&stack, "admit-3").await;
        if status == 201 {
            break serde_json::from_str::<gateway::OrderView>(&body).expect("order");
        }
        assert_eq!(status, 429, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the in-flight orders never ended"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(created.history, ["CREATED"], "a fresh order");
    let done = stack
        .await_order(&created.order_id, Duration::from_secs(60), |o| {
            o.status == "DELIVERED"
        })
        .await;
    assert_eq!(done.status, "DELIVERED");
}
