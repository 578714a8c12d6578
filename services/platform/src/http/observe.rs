//! Request metrics for a router: every answer counted by route, method and status code, and
//! the time to its response head in a histogram (an event stream's head comes at once; its
//! life is not a latency).

use std::sync::Arc;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    Router,
};

use crate::metrics::{Registry, LATENCY_BUCKETS};

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
}
