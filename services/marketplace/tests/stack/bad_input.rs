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

/// Sends one raw HTTP/1.1 request with `headers`; returns status, headers and body.
pub async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gateway");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(
            req.body(Full::new(Bytes::from(body.to_owned())))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.expect("body").to_bytes())
        .into_owned();
    (status, headers, body)
}

/// Asserts a problem+json answer with `want`.
pub fn assert_problem(answer: &(u16, hyper::HeaderMap, String), want: u16, what: &str) {
    let (status, headers, text) = answer;
    assert_eq!(*status, want, "{what} -> {text}");
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(ct, Some("application/problem+json"), "{what}");
    let p: Problem = serde_json::from_str(text).expect("problem+json body");
    assert_eq!(p.status, want, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_problem_json_4xx_and_never_a_500() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let auth = support::bearer(&stack.session);
    let json = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let text = [
        ("content-type", "text/plain"),
        ("authorization", auth.as_str()),
    ];
    let bearer = [("authorization", auth.as_str())];
    let public = [("content-type", "application/json")];
    let long_name = format!(
        r#"{{"email":"x@y.org","password":"long enough","display_name":"{}"}}"#,
        "n".repeat(101)
    );
    let ad = &stack.listing.ad_id;
    let own = json!({"title": "Mine", "price": {"amount_minor": 5, "currency": "RUB"}, "category": "home", "region": "msk"});
    let own: gateway::AdView = stack
        .client()
        .post_json(
            &format!("{}/v1/ads", stack.gateway),
            &[("authorization", &auth)],
            &own,
        )
        .await
        .expect("own ad");
    let own_ad = json!({"ad_id": own.ad_id}).to_string();
    let wrong_price =
        json!({"ad_id": ad, "expected_price": {"amount_minor": 1, "currency": "RUB"}}).to_string();
    let bad_price =
        json!({"ad_id": ad, "expected_price": {"amount_minor": -1, "currency": "rub"}}).to_string();
    let extra = json!({"ad_id": ad, "extra": 1}).to_string();
    let with_customer = json!({"ad_id": ad, "customer_id": "c"}).to_string();
    let with_amount = json!({"ad_id": ad, "amount_minor": 1}).to_string();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, u16);
    let cases: Vec<Case> = vec![
        ("POST", "/v1/orders", &json, "{not json", 400),
        ("POST", "/v1/orders", &text, "{}", 415),
        ("POST", "/v1/orders", &json, r#"{"item":"x"}"#, 422),
        (
            "POST",
            "/v1/orders",
            &json,
            r#"{"ad_id":"no-such-ad"}"#,
            404,
        ),
        ("POST", "/v1/orders", &json, &own_ad, 422),
        ("POST", "/v1/orders", &json, &wrong_price, 409),
        ("POST", "/v1/orders", &json, &bad_price, 409),
        ("POST", "/v1/orders", &json, &extra, 422),
        // The customer is the token's subject; a body cannot name another, nor a price.
        ("POST", "/v1/orders", &json, &with_customer, 422),
        ("POST", "/v1/orders", &json, &with_amount, 422),
        ("GET", "/v1/orders/not-a-uuid", &bearer, "", 400),
        (
            "GET",
            "/v1/orders/00000000-0000-4000-8000-000000000000",
            &bearer,
            "",
            404,
        ),
        ("GET", "/v1/nothing-here", &[], "", 404),
        (
            "POST",
            "/v1/users",
            &public,
            r#"{"email":"not-an-email","password":"long enough","display_name":"A"}"#,
            422,
        ),
        (
            "POST",
            "/v1/users",
            &public,
            r#"{"email":"a@b.org","password":"short","display_name":"A"}"#,
            422,
        ),
        (
            "POST",
            "/v1/users",
            &public,
            r#"{"email":"a@b.org","password":"long enough","display_name":"  "}"#,
            422,
        ),
        ("POST", "/v1/users", &public, &long_name, 422),
        ("POST", "/v1/users", &public, r#"{"email":"a@b.org"}"#, 422),
        (
            "POST",
            "/v1/sessions",
            &public,
            r#"{"email":"a@b.org","password":"x"}"#,
            422,
        ),
        (
            "POST",
            "/v1/sessions/refresh",
            &public,
            r#"{"refresh_token":""}"#,
            422,
        ),
        (
            "PATCH",
            "/v1/users/me",
            &json,
            r#"{"display_name":""}"#,
            422,
        ),
    ];
    for (method, path, headers, body, want) in cases {
        let answer = raw(gw, method, path, headers, body).await;
        assert_problem(&answer, want, &format!("{method} {path} {body:?}"));
    }
    // The same through the platform client: the typed error carries the problem.
    let e = stack
        .client()
        .post_json::<_, serde_json::Value>(
            &format!("{}/v1/orders", stack.gateway),
            &[("authorization", &auth)],
            &json!({"ad_id": ""}),
        )
        .await
        .expect_err("an empty ad id is refused");
    assert_eq!(problem_of(e).status, 404);
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
        .header("authorization", support::bearer(&stack.session))
        .body(Full::new(Bytes::from(stack.order_body().to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 201);
}
