//! Circuit breakers on the real stack: a service behind the gateway that takes connections
//! and never answers costs each client the whole call deadline only until the gateway's
//! breaker for it opens; after that the gateway refuses at once, 503 with `Retry-After`.

use std::time::Duration;

use platform::breaker::BreakerPolicy;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_answers_is_refused_at_once_once_its_breaker_opens() {
    // A black hole where the order service should be: it accepts connections (and keeps
    // them) but never says a word.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    let holding = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            kept.push(socket);
        }
    });
    let stack = support::start_without(&["order"], |s| {
        s.urls.insert("order".into(), format!("http://{hole_addr}"));
    })
    .await;
    let auth = support::bearer(&stack.session);
    let url = format!("{}/v1/orders/{}", stack.gateway, platform::ids::uuid_v4());
    let client = stack.client();
    let ask = || async {
        let started = tokio::time::Instant::now();
        let r = client
            .send("GET", &url, &[("authorization", auth.as_str())], None)
            .await
            .expect("the gateway answers");
        (r, started.elapsed())
    };

    // Until the breaker opens, each request waits out the call (connect or deadline).
    for n in 1..=BreakerPolicy::default().failures_to_open {
        let (r, took) = ask().await;
        assert_eq!(r.status, 503, "request {n}: {:?}", r.body);
        assert!(
            took >= Duration::from_millis(900),
            "request {n} was answered in {took:?}, before any deadline could pass"
        );
    }
    // Then the gateway refuses without asking.
    let (r, took) = ask().await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        took < Duration::from_millis(500),
        "with the breaker open the refusal took {took:?}"
    );
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds");
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    let problem: serde_json::Value = r.json().expect("problem+json");
    assert_eq!(
        problem["detail"], "the order service cannot answer now; retry",
        "no internal text"
    );
    holding.abort();
}
