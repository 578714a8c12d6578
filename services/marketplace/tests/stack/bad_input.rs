use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use platform::http::{HttpError, Problem, SpawnExecutor};
use serde_json::json;

use crate::support;

fn problem_of(e: HttpError) -> Problem {
    match e {
        HttpError::Status { body, .. } => serde_json::from_str(&body).expect("a problem+json body"),
        other => panic!("expected an HTTP error status, got {other}"),
    }
}

/// Sends one raw HTTP/1.1 request; returns status, content type and body.
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gateway");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = sender
        .send_request(
            req.body(Full::new(Bytes::from(body.to_owned())))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.expect("body").to_bytes())
        .into_owned();
    (status, ct, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_problem_json_4xx_and_never_a_500() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let cases = [
        (
            "POST",
            "/v1/orders",
            Some("application/json"),
            "{not json",
            400,
        ),
        ("POST", "/v1/orders", Some("text/plain"), "{}", 415),
        (
            "POST",
            "/v1/orders",
            Some("application/json"),
            r#"{"customer_id":"c"}"#,
            422,
        ),
        (
            "POST",
            "/v1/orders",
            Some("application/json"),
            r#"{"customer_id":"c","item":"x","amount_minor":-1,"currency":"RUB"}"#,
            422,
        ),
        (
            "POST",
            "/v1/orders",
            Some("application/json"),
            r#"{"customer_id":"c","item":"x","amount_minor":1,"currency":"rub"}"#,
            422,
        ),
        (
            "POST",
            "/v1/orders",
            Some("application/json"),
            r#"{"customer_id":"c","item":"x","amount_minor":1,"currency":"RUB","extra":1}"#,
            422,
        ),
        ("GET", "/v1/orders/not-a-uuid", None, "", 400),
        (
            "GET",
            "/v1/orders/00000000-0000-4000-8000-000000000000",
            None,
            "",
            404,
        ),
        ("GET", "/v1/nothing-here", None, "", 404),
    ];
    for (method, path, ct, body, want) in cases {
        let (status, content_type, text) = raw(gw, method, path, ct, body).await;
        assert_eq!(status, want, "{method} {path} {body:?} -> {text}");
        assert_eq!(content_type, "application/problem+json", "{method} {path}");
        let p: Problem = serde_json::from_str(&text).expect("problem+json body");
        assert_eq!(p.status, want);
    }
    // The same through the platform client: the typed error carries the problem.
    let e = stack
        .client()
        .post_json::<_, serde_json::Value>(
            &format!("{}/v1/orders", stack.gateway),
            &[],
            &json!({"customer_id": "", "item": "x", "amount_minor": 1, "currency": "RUB"}),
        )
        .await
        .expect_err("empty customer id is refused");
    assert_eq!(problem_of(e).status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_speaks_http2_with_prior_knowledge() {
    let stack = support::start(|_| {}).await;
    let stream = tokio::net::TcpStream::connect(support::listen(&stack.settings, "gateway"))
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(SpawnExecutor, TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/v1/orders",
            support::listen(&stack.settings, "gateway")
        ))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"customer_id":"h2","item":"kettle","amount_minor":700,"currency":"RUB"}"#,
        )))
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 201);
}
