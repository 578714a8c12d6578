//! Live notifications on the real stack: an order's status changes reach its buyer over SSE
//! from the notification service (Kafka → PostgreSQL log → SSE), and a reconnect resumes
//! without gaps or repeats.

use std::time::Duration;

use notification::client::{Event, SseError, SseStream};

use crate::support::{self, Stack};

fn stream_url(stack: &Stack, query: &str) -> String {
    format!(
        "http://{}/v1/notifications/stream{query}",
        support::listen(&stack.settings, "notification-http")
    )
}

/// Opens the stream, waiting (bounded) while the service has no signing keys yet (503).
async fn open(stack: &Stack, query: &str, last_event_id: Option<&str>) -> SseStream {
    let started = tokio::time::Instant::now();
    loop {
        match SseStream::open(
            &stream_url(stack, query),
            &stack.session.access_token,
            last_event_id,
            Duration::from_secs(10),
        )
        .await
        {
            Ok(s) => return s,
            Err(SseError::Refused { status: 503, .. })
                if started.elapsed() < Duration::from_secs(20) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the stream opens: {e}"),
        }
    }
}

async fn next(s: &mut SseStream) -> Event {
    tokio::time::timeout(Duration::from_secs(60), s.next())
        .await
        .expect("an event within 60 s")
        .expect("the stream goes on")
        .expect("a well-formed event")
}

/// The next update event (skipping position frames).
async fn next_update(s: &mut SseStream) -> Event {
    loop {
        let e = next(s).await;
        if e.event != "position" {
            return e;
        }
    }
}

fn status_of(e: &Event) -> String {
    e.json()
        .and_then(|j| j["body"]["status"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("an order status update: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_statuses_reach_its_buyer_over_sse_and_a_reconnect_resumes_without_gaps() {
    let stack = support::start(|_| {}).await;
    let mut live = open(&stack, "", None).await;
    assert!(
        live.headers()
            .iter()
            .any(|(k, v)| k == "content-type" && v == "text/event-stream"),
        "{:?}",
        live.headers()
    );
    let hello = next(&mut live).await;
    assert_eq!(
        (hello.event.as_str(), hello.id.as_str()),
        ("position", "0:0")
    );

    let order = stack.place_order(Some("sse-1")).await;
    let mut events = Vec::new();
    while events.last().map(status_of).as_deref() != Some("DELIVERED") {
        let e = next_update(&mut live).await;
        // The whole frame on a failure: a `reset` names its reason in its data.
        assert_eq!(e.event, "order.status", "{e:?}");
        events.push(e);
    }
    let done = stack
        .await_order(&order.order_id, Duration::from_secs(30), |o| {
            o.status == "DELIVERED"
        })
        .await;
    let statuses: Vec<String> = events.iter().map(status_of).collect();
    assert_eq!(statuses, done.history, "one update per status, in order");
    let epoch = events[0]
        .id
        .split(':')
        .next()
        .expect("epoch:seq")
        .to_owned();
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<String> = (1..=events.len()).map(|i| format!("{epoch}:{i}")).collect();
    assert_eq!(ids, expected, "seqs 1, 2, 3, … in one epoch");

    // A reconnect from the third update gets the fourth onwards, once each.
    let mut resumed = open(&stack, "", Some(&ids[2])).await;
    for want in &ids[3..] {
        assert_eq!(&next_update(&mut resumed).await.id, want);
    }
    let mut all = open(&stack, "?since=0:0", None).await;
    assert_eq!(
        next_update(&mut all).await.id,
        ids[0],
        "`since` resumes like Last-Event-ID"
    );
    drop(all);
    // A filter by order skips the other orders' updates (and the position moves past them).
    let second = stack.place_order(Some("sse-2")).await;
    let mut only_second = open(
        &stack,
        &format!("?since=0:0&order={}&kind=order.status", second.order_id),
        None,
    )
    .await;
    let first_of_second = next_update(&mut only_second).await;
    assert_eq!(first_of_second.id, format!("{epoch}:{}", ids.len() + 1));
    assert_eq!(status_of(&first_of_second), "CREATED");
    let page: serde_json::Value = stack
        .client()
        .get_json_with(
            &format!(
                "http://{}/v1/notifications?after=2&limit=2",
                support::listen(&stack.settings, "notification-http")
            ),
            &[("authorization", &support::bearer(&stack.session))],
        )
        .await
        .expect("a page");
    assert_eq!(page["epoch"], epoch.as_str());
    assert!(
        page["last_seq"].as_i64().expect("last_seq") > events.len() as i64,
        "the second order's updates follow the first's"
    );
    let seqs: Vec<i64> = page["updates"]
        .as_array()
        .expect("updates")
        .iter()
        .map(|u| u["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_requests_get_problem_answers() {
    let stack = support::start(|_| {}).await;
    // Wait until the service can check tokens at all.
    drop(open(&stack, "", None).await);
    let client = stack.client();
    let auth = support::bearer(&stack.session);
    let url = |q: &str| stream_url(&stack, q);
    let page_url = |q: &str| {
        format!(
            "http://{}/v1/notifications{q}",
            support::listen(&stack.settings, "notification-http")
        )
    };
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (
            page_url("?after=abc"),
            vec![("authorization", auth.as_str())],
            400,
        ),
        (
            page_url("?limit=0"),
            vec![("authorization", auth.as_str())],
            400,
        ),
        (
            page_url("?limit=-1"),
            vec![("authorization", auth.as_str())],
            400,
        ),
        (page_url(""), vec![], 401),
        (url(""), vec![], 401),
        (url(""), vec![("authorization", "Bearer not.a.token")], 401),
        (url("?access_token=not.a.token"), vec![], 401),
        (
            url(""),
            vec![
                ("authorization", auth.as_str()),
                ("last-event-id", "nonsense"),
            ],
            400,
        ),
        (
            url("?since=abc:-1"),
            vec![("authorization", auth.as_str())],
            400,
        ),
        (
            url("?kind=order.status,bogus"),
            vec![("authorization", auth.as_str())],
            400,
        ),
    ];
    for (url, headers, status) in cases {
        let r = client
            .send("GET", &url, &headers, None)
            .await
            .expect("an answer");
        assert_eq!(r.status, status, "{url} {headers:?}: {:?}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{url}"
        );
    }
    // The token in the query string works where headers cannot be set (EventSource).
    let token_url = url(&format!("?access_token={}", stack.session.access_token));
    let mut s = client.stream(&token_url, &[]).await.expect("opens");
    assert_eq!(s.status, 200);
    assert!(s.chunk().await.is_some());
}

fn ws_url(stack: &Stack, query: &str) -> String {
    format!(
        "ws://{}/v1/notifications/ws{query}",
        support::listen(&stack.settings, "notification-http")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_follows_an_order_resumes_with_since_and_closes_with_reasons() {
    use notification::client::WsStream;

    let stack = support::start(|_| {}).await;
    // The same readiness wait as SSE (the service fetches the signing keys first).
    drop(open(&stack, "", None).await);
    let token = stack.session.access_token.clone();
    let mut ws = WsStream::open(
        &ws_url(&stack, "?since=0:0"),
        &token,
        Duration::from_secs(10),
    )
    .await
    .expect("the handshake succeeds");
    let order = stack.place_order(Some("ws-1")).await;
    let mut ids = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message within 60 s")
            .expect("the socket stays open")
            .expect("a well-formed message");
        assert_eq!(e.event, "update", "{e:?}");
        let j = e.json().expect("json");
        assert_eq!(j["update"]["subject"], order.order_id.as_str());
        ids.push(e.id.clone());
        if j["update"]["body"]["status"] == "DELIVERED" {
            break;
        }
    }
    let epoch = ids[0].split(':').next().expect("epoch").to_owned();
    let expected: Vec<String> = (1..=ids.len()).map(|i| format!("{epoch}:{i}")).collect();
    assert_eq!(ids, expected);

    // Resuming from the second update replays the rest, in order.
    let mut again = WsStream::open(
        &ws_url(&stack, &format!("?since={}", ids[1])),
        &token,
        Duration::from_secs(10),
    )
    .await
    .expect("handshake");
    for want in &ids[2..] {
        let e = again.next().await.expect("open").expect("message");
        assert_eq!(&e.id, want);
    }
    // A client message over the bound is answered with close code 1009.
    again
        .send_text("x".repeat(notification::ws::CLIENT_MESSAGE_BYTES_MAX + 1))
        .await
        .expect("sent");
    while let Some(m) = again.next().await {
        if m.is_err() {
            break;
        }
    }
    assert_eq!(
        again.closed.as_ref().map(|c| c.0),
        Some(1009),
        "{:?}",
        again.closed
    );

    // The token is checked before the upgrade: no 101 for a bad one.
    match WsStream::open(&ws_url(&stack, ""), "not.a.token", Duration::from_secs(10)).await {
        Err(notification::client::SseError::Refused { status, .. }) => assert_eq!(status, 401),
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("a bad token was upgraded"),
    }
    // A plain GET is not a handshake.
    let plain = stack
        .client()
        .send(
            "GET",
            &ws_url(&stack, "").replacen("ws://", "http://", 1),
            &[("authorization", &support::bearer(&stack.session))],
            None,
        )
        .await
        .expect("an answer");
    assert_eq!(plain.status, 400);
    assert_eq!(
        plain.header("content-type"),
        Some("application/problem+json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reporter_hears_the_moderation_decision_live() {
    let stack = support::start(|_| {}).await;
    let mut live = open(&stack, "?since=0:0&kind=moderation.result", None).await;
    let body = serde_json::json!({
        "target_kind": "AD", "target_id": stack.listing.ad_id,
        "reason": "scam", "comment": "asks for a prepayment",
    });
    let r = stack
        .client()
        .send(
            "POST",
            &format!("{}/v1/reports", stack.gateway),
            &[("authorization", &support::bearer(&stack.session))],
            Some(&body),
        )
        .await
        .expect("an answer");
    assert_eq!(r.status, 202);
    let report: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let e = next_update(&mut live).await;
    assert_eq!(e.event, "moderation.result");
    let j = e.json().expect("json");
    assert_eq!(j["subject"], report["report_id"]);
    assert_eq!(j["body"]["decision"], "BAN");
    assert_eq!(j["body"]["target_id"], stack.listing.ad_id.as_str());
}
