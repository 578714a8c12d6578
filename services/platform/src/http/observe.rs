//! Request metrics for a router: every answer counted by route, method and status code, and
//! the time to its response head in a histogram (an event stream's head comes at once; its
//! life is not a latency).

use std::sync::Arc;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    Router,
};

use crate::{
    metrics::{Registry, LATENCY_BUCKETS},
    trace,
};

/// `router` with its requests counted and timed in `registry` (`http_requests_total`,
/// `http_request_duration_seconds`). The route is the pattern that matched
/// (`/v1/orders/{id}` stays one series); a request no route matched is `unmatched`.
pub fn observed(router: Router, registry: Arc<Registry>) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let registry = registry.clone();
            async move {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", |p| p.as_str())
                    .to_owned();
                let method = req.method().as_str().to_owned();
                let started = tokio::time::Instant::now();
                let response = next.run(req).await;
                let code = response.status().as_u16().to_string();
                registry
                    .counter(
                        "http_requests_total",
                        "HTTP requests answered, by route, method and status code.",
                        &[("route", &route), ("method", &method), ("code", &code)],
                    )
                    .inc();
                registry
                    .histogram(
                        "http_request_duration_seconds",
                        "Time from an HTTP request to its response head, by route and method.",
                        &[("route", &route), ("method", &method)],
                        &LATENCY_BUCKETS,
                    )
                    .observe_duration(started.elapsed());
                response
            }
        },
    ))
}

/// `router` with every request run as a server span of the client's trace: a valid
/// `traceparent` (and `tracestate`) continues the client's trace, anything else starts a new
/// one. The answer carries `traceresponse` (the span's own `traceparent`), so a client that
/// sent none can still name its trace.
pub fn traced(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(
        |req: Request, next: Next| async move {
            let (ctx, name) = {
                let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                let parent = header(trace::TRACEPARENT)
                    .and_then(|p| trace::TraceContext::parse(p, header(trace::TRACESTATE)));
                let ctx = match parent {
                    Some(p) => p.child(),
                    None => trace::TraceContext::start(),
                };
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", |p| p.as_str());
                (ctx, format!("{} {route}", req.method()))
            };
            let started = trace::export::Started::now();
            let mut response = trace::within(Some(ctx.clone()), next.run(req)).await;
            trace::export::finish(&name, &ctx, started, !response.status().is_server_error());
            if let Ok(v) = ctx.traceparent().parse() {
                response.headers_mut().insert(trace::TRACERESPONSE, v);
            }
            response
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, routing::get};
    use tower::ServiceExt;

    #[tokio::test]
    async fn answers_are_counted_by_route_pattern_method_and_code() {
        let registry = Registry::new();
        let router = observed(
            Router::new()
                .route("/v1/orders/:id", get(|| async { "order" }))
                .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "none") }),
            registry.clone(),
        );
        for uri in ["/v1/orders/1", "/v1/orders/2", "/nowhere"] {
            let req = axum::http::Request::get(uri)
                .body(Body::empty())
                .expect("request");
            router.clone().oneshot(req).await.expect("answer");
        }
        let text = registry.render(&[]);
        assert!(
            text.contains(
                "http_requests_total{code=\"200\",method=\"GET\",route=\"/v1/orders/:id\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "http_requests_total{code=\"404\",method=\"GET\",route=\"unmatched\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_count{method=\"GET\",route=\"/v1/orders/:id\"} 2\n"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_request_continues_the_clients_trace_or_starts_one() {
        let router = traced(Router::new().route(
            "/t",
            get(|| async {
                crate::trace::current()
                    .map(|c| c.traceparent())
                    .unwrap_or_default()
            }),
        ));
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (header, continued) in [
            (Some(sent), true),
            (Some("00-garbage"), false),
            (None, false),
        ] {
            let mut req = axum::http::Request::get("/t");
            if let Some(h) = header {
                req = req.header("traceparent", h);
            }
            let answer = router
                .clone()
                .oneshot(req.body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            let response = answer.headers()["traceresponse"]
                .to_str()
                .expect("ascii")
                .to_owned();
            let body = axum::body::to_bytes(answer.into_body(), 1024)
                .await
                .expect("body");
            let seen = String::from_utf8(body.to_vec()).expect("utf-8");
            assert_eq!(
                seen, response,
                "the handler runs in the span it answers with"
            );
            let ctx = crate::trace::TraceContext::parse(&seen, None).expect("a valid context");
            assert_eq!(
                ctx.trace_id == 0x4bf92f3577b34da6a3ce929d0e0e4736,
                continued,
                "{header:?}"
            );
            assert_ne!(
                ctx.span_id, 0x00f067aa0ba902b7,
                "the server span is a new one"
            );
        }
    }
}
