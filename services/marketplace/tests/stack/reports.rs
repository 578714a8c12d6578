//! Reports on the real stack: 202 at once, the task through Kafka to the moderation workers,
//! the decision back on the report; idempotent per reporter and target; bad reports refused.

use std::time::Duration;

use gateway::ReportView;
use platform::http::{HttpClient, HttpResponse};

use crate::support::{self, bearer};

async fn send(
    stack: &support::Stack,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> HttpResponse {
    HttpClient::new(Duration::from_secs(10))
        .send(
            method,
            &format!("{}{path}", stack.gateway),
            &[("authorization", auth)],
            body.as_ref(),
        )
        .await
        .expect("the gateway answers")
}

/// Polls the report at `location` until it is DECIDED.
async fn decided(stack: &support::Stack, auth: &str, location: &str) -> ReportView {
    let started = tokio::time::Instant::now();
    loop {
        let r: ReportView = send(stack, auth, "GET", location, None)
            .await
            .json()
            .expect("a report");
        if r.status == "DECIDED" {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "report {location} still {} after 60 s",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_report_is_accepted_at_once_and_decided_by_the_moderation_workers() {
    let stack = support::start(|_| {}).await;
    let auth = bearer(&stack.session);
    let body = serde_json::json!({
        "target_kind": "AD", "target_id": stack.listing.ad_id,
        "reason": "scam", "comment": "asks for a prepayment by card",
    });
    let r = send(&stack, &auth, "POST", "/v1/reports", Some(body.clone())).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("Location").to_owned();
    let accepted: ReportView = r.json().expect("a report");
    assert_eq!(accepted.status, "PROCESSING");
    assert_eq!(location, format!("/v1/reports/{}", accepted.report_id));
    // Reporting the same ad again is the same report.
    let again: ReportView = send(&stack, &auth, "POST", "/v1/reports", Some(body))
        .await
        .json()
        .expect("a report");
    assert_eq!(again.report_id, accepted.report_id);

    let report = decided(&stack, &auth, &location).await;
    assert_eq!(report.decision.as_deref(), Some("BAN"));
    // The ban takes effect: the ad is gone for everyone but its owner, and not for sale.
    let card = format!("/v1/ads/{}", stack.listing.ad_id);
    let started = tokio::time::Instant::now();
    loop {
        let r = send(&stack, &auth, "GET", &card, None).await;
        if r.status == 410 {
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the banned ad still answers {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = send(
        &stack,
        &auth,
        "POST",
        "/v1/orders",
        Some(stack.order_body()),
    )
    .await;
    assert_eq!(r.status, 410, "a banned ad is not for sale");

    // A harmless report of a user is decided OK.
    let other = support::register_and_login(&stack.gateway, "reported@stack.test").await;
    let body =
        serde_json::json!({"target_kind": "USER", "target_id": other.user_id, "reason": "spam"});
    let r = send(&stack, &auth, "POST", "/v1/reports", Some(body)).await;
    assert_eq!(r.status, 202);
    let location = r.header("location").expect("Location").to_owned();
    assert_eq!(
        decided(&stack, &auth, &location).await.decision.as_deref(),
        Some("OK")
    );
    // Nobody else reads a report.
    let stranger = bearer(&other);
    assert_eq!(
        send(&stack, &stranger, "GET", &location, None).await.status,
        404
    );

    // A banned user can no longer log in or refresh a session.
    let body = serde_json::json!({"target_kind": "USER", "target_id": other.user_id, "reason": "other", "comment": "ban: sells fakes"});
    let r = send(&stack, &stranger, "POST", "/v1/reports", Some(body.clone())).await;
    assert_eq!(r.status, 422, "one does not report oneself");
    // Another reporter (the first one's report of this user stands, decided OK).
    let witness = bearer(&support::register_and_login(&stack.gateway, "witness@stack.test").await);
    let r = send(&stack, &witness, "POST", "/v1/reports", Some(body)).await;
    assert_eq!(r.status, 202);
    let location = r.header("location").expect("Location").to_owned();
    assert_eq!(
        decided(&stack, &witness, &location)
            .await
            .decision
            .as_deref(),
        Some("BAN")
    );
    let login = serde_json::json!({"email": "reported@stack.test", "password": support::PASSWORD});
    let client = HttpClient::new(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    loop {
        let r = client
            .send(
                "POST",
                &format!("{}/v1/sessions", stack.gateway),
                &[],
                Some(&login),
            )
            .await
            .expect("answer");
        if r.status == 403 {
            break;
        }
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the banned user still logs in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refresh = serde_json::json!({"refresh_token": other.refresh_token});
    let r = client
        .send(
            "POST",
            &format!("{}/v1/sessions/refresh", stack.gateway),
            &[],
            Some(&refresh),
        )
        .await
        .expect("answer");
    assert!(
        matches!(r.status, 401 | 403),
        "refresh answered {}",
        r.status
    );
}

#[tokio::test]
async fn bad_reports_are_refused_with_problem_json() {
    let stack = support::start(|_| {}).await;
    let auth = bearer(&stack.session);
    let ad = stack.listing.ad_id.clone();
    for (body, status) in [
        (
            serde_json::json!({"target_kind": "AD", "target_id": ad, "reason": "boring"}),
            422,
        ),
        (
            serde_json::json!({"target_kind": "CAT", "target_id": ad, "reason": "spam"}),
            422,
        ),
        (
            serde_json::json!({"target_kind": "AD", "target_id": ad, "reason": "spam", "comment": "x".repeat(1001)}),
            422,
        ),
        (
            serde_json::json!({"target_kind": "AD", "target_id": "no-such-ad", "reason": "spam"}),
            404,
        ),
        (
            serde_json::json!({"target_kind": "USER", "target_id": stack.session.user_id, "reason": "spam"}),
            422,
        ),
        (
            serde_json::json!({"target_kind": "AD", "reason": "spam"}),
            422,
        ),
    ] {
        let r = send(&stack, &auth, "POST", "/v1/reports", Some(body.clone())).await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let body = serde_json::json!({"target_kind": "AD", "target_id": ad, "reason": "spam"});
    let r = HttpClient::new(Duration::from_secs(10))
        .send(
            "POST",
            &format!("{}/v1/reports", stack.gateway),
            &[],
            Some(&body),
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 401);
    assert_eq!(
        send(&stack, &auth, "GET", "/v1/reports/no-such-report", None)
            .await
            .status,
        404
    );
}
