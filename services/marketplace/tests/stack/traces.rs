//! Trace context on the real stack: an order placed with a client's `traceparent` is one
//! trace across the gateway, the order service, its saga, payment and its PSP calls,
//! delivery and its courier calls, and the consumers that read its events from Kafka —
//! as the spans exported over OTLP/HTTP to a collector (a small one in this test) show.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, routing::post, Json, Router};
use platform::{
    trace::{
        export::{install, Exporter},
        TraceContext,
    },
    Shutdown,
};
use serde_json::Value;

use crate::support;

/// One exported span: (name, span id, parent span id).
type Span = (String, String, String);

type Received = Arc<Mutex<BTreeMap<String, Vec<Span>>>>;

/// An OTLP/HTTP JSON collector on a loopback port: spans by trace id.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let router = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(r): State<Received>, Json(body): Json<Value>| async move {
                    let mut r = r.lock().expect("spans");
                    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            for s in ss["spans"].as_array().into_iter().flatten() {
                                let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                                r.entry(text("traceId")).or_default().push((
                                    text("name"),
                                    text("spanId"),
                                    text("parentSpanId"),
                                ));
                            }
                        }
                    }
                    Json(serde_json::json!({}))
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector port");
    let addr = listener.local_addr().expect("collector address");
    tokio::spawn(platform::http::serve(listener, router, Shutdown::never()));
    (format!("http://{addr}"), received)
}

/// The spans an order's trace must hold once the order is delivered.
const EXPECTED: [&str; 11] = [
    "POST /v1/orders",
    "order.CreateOrder",
    "order.saga CREATED",
    "order.saga PAYMENT_PENDING",
    "payment.Charge",
    "payment.psp",
    "order.saga PAID",
    "delivery.CreateShipment",
    "delivery.courier",
    // Not SHIPPED: when the courier has delivered by the time the SHIPPING step hears from
    // it, that step takes the order through SHIPPED to DELIVERED itself.
    "order.saga SHIPPING",
    "consume order.status.changed",
];

fn tree(spans: &[Span], parent: &str, depth: usize, out: &mut String) {
    for (name, id, _) in spans.iter().filter(|(_, _, p)| p == parent) {
        out.push_str(&format!("{}{name}\n", "  ".repeat(depth)));
        tree(spans, id, depth + 1, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_from_the_client_through_every_service_and_kafka() {
    let (endpoint, received) = collector().await;
    // The only test of this process that installs an exporter.
    install(Exporter::Otlp { endpoint }, "stack-test", Shutdown::never());
    let stack = support::start(|_| {}).await;

    let client_span = TraceContext::start();
    let trace_id = client_span.trace_id_hex();
    let auth = support::bearer(&stack.session);
    let traceparent = client_span.traceparent();
    let answer = stack
        .client()
        .send(
            "POST",
            &format!("{}/v1/orders", stack.gateway),
            &[
                ("authorization", auth.as_str()),
                ("idempotency-key", "stack-trace-1"),
                ("traceparent", traceparent.as_str()),
                ("tracestate", "vendor=opaque"),
            ],
            Some(&stack.order_body()),
        )
        .await
        .expect("the gateway answers");
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let response = answer
        .header("traceresponse")
        .and_then(|t| TraceContext::parse(t, None))
        .expect("the answer names its span");
    assert_eq!(
        response.trace_id_hex(),
        trace_id,
        "the client's trace goes on"
    );
    let order: Value = serde_json::from_slice(&answer.body).expect("json");
    let order_id = order["order_id"].as_str().expect("order id").to_owned();
    stack
        .await_order(&order_id, Duration::from_secs(60), |o| {
            o.status == "DELIVERED"
        })
        .await;

    // Spans reach the collector in batches, and a parent span is exported when it ends
    // (after its children): wait until every expected span is there and every parent is
    // known.
    let client_id = format!("{:016x}", client_span.span_id);
    let started = tokio::time::Instant::now();
    let spans = loop {
        let spans = received
            .lock()
            .expect("spans")
            .get(&trace_id)
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = spans.iter().map(|(n, _, _)| n.as_str()).collect();
        let missing: Vec<&&str> = EXPECTED.iter().filter(|e| !names.contains(e)).collect();
        let orphans: Vec<&Span> = spans
            .iter()
            .filter(|(_, _, p)| *p != client_id && !spans.iter().any(|(_, id, _)| id == p))
            .collect();
        if missing.is_empty() && orphans.is_empty() {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "trace {trace_id}: missing {missing:?}, parents unknown {orphans:?}, spans {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let roots: Vec<&Span> = spans.iter().filter(|(_, _, p)| *p == client_id).collect();
    assert_eq!(
        roots.len(),
        1,
        "one span (the gateway's) hangs off the client's: {roots:?}"
    );
    assert_eq!(roots[0].0, "POST /v1/orders");
    assert_eq!(roots[0].1, format!("{:016x}", response.span_id));
    let mut shown = String::new();
    tree(&spans, &client_id, 0, &mut shown);
    println!("trace {trace_id}:\n{shown}");
}
