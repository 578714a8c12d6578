//! `/metrics` on the real stack: the admin listener's page is scraped before and after an
//! order goes through, and the series that order must move have moved — requests at the
//! gateway, calls between services, the saga's steps and outcome, the outbox relay — while
//! the breakers read closed.

use std::{collections::BTreeMap, time::Duration};

use crate::support;

/// A scraped page: each sample's name and sorted labels, and its value.
type Page = BTreeMap<(String, Vec<(String, String)>), f64>;

fn parse(text: &str) -> Page {
    let mut page = Page::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let mut labels: Vec<(String, String)> = inner
                    .split("\",")
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                labels.sort();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        let value: f64 = value.parse().expect("a number");
        page.insert((name.to_owned(), labels), value);
    }
    page
}

/// The sum of the samples of `name` that carry every label in `labels`.
fn sum(page: &Page, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.iter()
        .filter(|((n, l), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| *v)
        .sum()
}

async fn scrape(stack: &support::Stack) -> (Page, String) {
    let r = stack
        .client()
        .send("GET", &format!("{}/metrics", stack.admin), &[], None)
        .await
        .expect("the admin listener answers");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body.to_vec()).expect("text");
    (parse(&text), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_moves_the_series_of_every_service_it_passes_through() {
    let stack = support::start(|_| {}).await;
    let (before, _) = scrape(&stack).await;
    let order = stack.place_order(Some("metrics-1")).await;
    stack
        .await_order(&order.order_id, Duration::from_secs(60), |o| {
            o.status == "DELIVERED"
        })
        .await;
    // Read the ad twice: the second read is a cache hit.
    let ad = format!("{}/v1/ads/{}", stack.gateway, stack.listing.ad_id);
    for _ in 0..2 {
        let r = stack
            .client()
            .send("GET", &ad, &[], None)
            .await
            .expect("ad");
        assert_eq!(r.status, 200);
    }
    // The saga counts its last step just after the commit a reader may already see, and the
    // relay publishes the last event a moment later: scrape until both are in (bounded).
    // Consumers report their lag every few seconds: the status topic's is among them.
    let lag_of_status = |page: &Page| {
        page.keys().any(|(n, l)| {
            n == "consumer_lag" && l.contains(&("topic".into(), "order.status.changed".into()))
        })
    };
    let settled = |page: &Page| {
        let order = [("service", "order")];
        sum(page, "outbox_sent_total", &order) - sum(&before, "outbox_sent_total", &order) >= 6.0
            && sum(page, "sagas_ended_total", &order) > sum(&before, "sagas_ended_total", &order)
            && lag_of_status(page)
    };
    let started = tokio::time::Instant::now();
    let (after, text) = loop {
        let (page, text) = scrape(&stack).await;
        if settled(&page) || started.elapsed() > Duration::from_secs(10) {
            break (page, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let moved = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (sum(&before, name, labels), sum(&after, name, labels));
        assert!(
            a - b >= by,
            "{name}{labels:?} went from {b} to {a}, expected at least +{by}\n{text}"
        );
    };
    let gateway = ("service", "gateway");
    let orders_route = [gateway, ("route", "/v1/orders"), ("method", "POST")];
    moved(
        "http_requests_total",
        &[&orders_route[..], &[("code", "201")]].concat(),
        1.0,
    );
    moved("http_request_duration_seconds_count", &orders_route, 1.0);
    moved(
        "http_request_duration_seconds_bucket",
        &[&orders_route[..], &[("le", "+Inf")]].concat(),
        1.0,
    );
    moved(
        "rpc_client_requests_total",
        &[gateway, ("peer", "order"), ("code", "Ok")],
        1.0,
    );
    moved(
        "rpc_client_duration_seconds_count",
        &[gateway, ("peer", "order")],
        1.0,
    );
    let order_service = ("service", "order");
    moved(
        "rpc_client_requests_total",
        &[order_service, ("peer", "payment"), ("code", "Ok")],
        1.0,
    );
    moved(
        "rpc_client_requests_total",
        &[order_service, ("peer", "delivery"), ("code", "Ok")],
        1.0,
    );
    moved(
        "rpc_server_requests_total",
        &[
            order_service,
            ("method", "/marketplace.order.v1.OrderService/CreateOrder"),
            ("code", "Ok"),
        ],
        1.0,
    );
    moved(
        "rpc_server_requests_total",
        &[
            ("service", "payment"),
            ("method", "/marketplace.payment.v1.PaymentService/Charge"),
            ("code", "Ok"),
        ],
        1.0,
    );
    // The gateway's read of someone else's order is answered NotFound by the order service.
    let r = stack
        .client()
        .send(
            "GET",
            &format!("{}/v1/orders/{}", stack.gateway, platform::ids::uuid_v4()),
            &[("authorization", &support::bearer(&stack.session))],
            None,
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 404);
    let (after_miss, _) = scrape(&stack).await;
    let get_order = [
        order_service,
        ("method", "/marketplace.order.v1.OrderService/GetOrder"),
        ("code", "NotFound"),
    ];
    assert_eq!(
        sum(&after_miss, "rpc_server_requests_total", &get_order)
            - sum(&after, "rpc_server_requests_total", &get_order),
        1.0,
        "a failed call is counted with its code"
    );
    for step in ["CREATED", "PAYMENT_PENDING", "PAID", "SHIPPING", "SHIPPED"] {
        moved(
            "saga_step_duration_seconds_count",
            &[order_service, ("status", step)],
            1.0,
        );
    }
    moved(
        "sagas_ended_total",
        &[order_service, ("outcome", "DELIVERED")],
        1.0,
    );
    moved(
        "saga_duration_seconds_count",
        &[order_service, ("outcome", "DELIVERED")],
        1.0,
    );
    moved("outbox_sent_total", &[order_service], 6.0);
    // The PSP and the courier are called over HTTP and counted per dependency.
    for (service, dependency) in [("payment", "psp"), ("delivery", "courier")] {
        let labels = [("service", service), ("dependency", dependency)];
        moved("http_client_requests_total", &labels, 1.0);
        moved("http_client_duration_seconds_count", &labels, 1.0);
    }
    moved(
        "cache_requests_total",
        &[gateway, ("cache", "ad"), ("result", "hit")],
        1.0,
    );
    // Every breaker on the page reads closed, and each dependency has one.
    for (service, dependency) in [("payment", "psp"), ("delivery", "courier")] {
        let key = (
            "circuit_breaker_state".to_owned(),
            vec![
                ("dependency".to_owned(), dependency.to_owned()),
                ("service".to_owned(), service.to_owned()),
            ],
        );
        assert_eq!(after.get(&key), Some(&0.0), "{key:?} in\n{text}");
    }
    assert!(
        sum(&after, "circuit_breaker_state", &[gateway]) == 0.0
            && after.keys().any(|(n, l)| n == "circuit_breaker_state"
                && l.contains(&("service".into(), "gateway".into()))),
        "the gateway's breakers are listed and closed\n{text}"
    );
    assert!(
        lag_of_status(&after),
        "a consumer of order.status.changed reports its lag\n{text}"
    );
    assert!(
        after
            .keys()
            .any(|(n, l)| n == "outbox_oldest_row_age_milliseconds"
                && l.contains(&("service".into(), "order".into()))),
        "the order service's relay reports its oldest row\n{text}"
    );
    // Every series the Grafana dashboard draws is on the page.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../../deploy/grafana/marketplace.json"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("an expr").to_owned())
        .collect();
    let mut drawn: Vec<&str> = exprs
        .iter()
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|t| {
            [
                "_total",
                "_bucket",
                "_state",
                "_rows",
                "_lag",
                "_milliseconds",
            ]
            .iter()
            .any(|s| t.ends_with(s))
        })
        .collect();
    drawn.sort_unstable();
    drawn.dedup();
    assert!(drawn.len() >= 10, "the dashboard draws {drawn:?}");
    for name in drawn {
        assert!(
            after.keys().any(|(n, _)| n == name),
            "the dashboard draws {name}, which no service exposes\n{text}"
        );
    }
    // One family, one declaration.
    let mut declared: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let all = declared.len();
    declared.sort_unstable();
    declared.dedup();
    assert_eq!(declared.len(), all, "a family declared twice\n{text}");
}
