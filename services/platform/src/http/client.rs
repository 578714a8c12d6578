use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};

use crate::breaker::Breaker;

/// Bound on a response body read by [`HttpClient`].
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// Errors of an outgoing HTTP call.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid url {0}")]
    InvalidUrl(String),
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("http: {0}")]
    Protocol(String),
    #[error("status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("body does not decode: {0}")]
    Decode(String),
    /// Not sent: the dependency's circuit breaker is open.
    #[error(transparent)]
    CircuitOpen(#[from] crate::breaker::Refused),
}

impl HttpError {
    /// Whether the same request may succeed later (network trouble or a 5xx/429 answer).
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Connect { .. }
            | HttpError::Timeout(_)
            | HttpError::Protocol(_)
            | HttpError::CircuitOpen(_) => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            HttpError::InvalidUrl(_) | HttpError::Decode(_) => false,
        }
    }

    /// Whether the error says the dependency itself is in trouble, as a circuit breaker
    /// counts it: unreachable, late, broken, or a 5xx. A 4xx (429 included: a deliberate,
    /// fast answer with its own retry hint) shows a dependency that answers.
    pub fn is_dependency_failure(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout(_) | HttpError::Protocol(_) => true,
            HttpError::Status { status, .. } => *status >= 500,
            HttpError::InvalidUrl(_) | HttpError::Decode(_) | HttpError::CircuitOpen(_) => false,
        }
    }
}

/// A minimal JSON-over-HTTP/1.1 client: one connection per request, a timeout on the whole
/// exchange, and optionally a circuit breaker in front of the dependency. Built on hyper's
/// connection API over `tokio::net::TcpStream`, so it runs in the simulation too.
#[derive(Clone, Debug)]
pub struct HttpClient {
    /// Bound on connect + request + response.
    pub timeout: Duration,
    /// The dependency's breaker, shared by every client that calls it.
    breaker: Option<std::sync::Arc<Breaker>>,
    /// Whether the breaker counts this client's timeouts as failures.
    timeouts_count: bool,
    /// Where this client's exchanges are counted, and the dependency's name there.
    metrics: Option<(std::sync::Arc<crate::metrics::Registry>, String)>,
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Self {
        HttpClient {
            timeout,
            breaker: None,
            timeouts_count: true,
            metrics: None,
        }
    }

    /// The same client, counted in `registry` as calls to `dependency`:
    /// `http_client_requests_total{dependency,code}` (the status, or `timeout`,
    /// `unreachable`, `broken` or `circuit_open` when no answer came) and
    /// `http_client_duration_seconds{dependency}`. Retries of its calls go to
    /// [`HttpClient::retries`].
    pub fn observed(
        self,
        registry: std::sync::Arc<crate::metrics::Registry>,
        dependency: &str,
    ) -> Self {
        HttpClient {
            metrics: Some((registry, dependency.to_owned())),
            ..self
        }
    }

    /// The counter `http_client_retries_total{dependency}` of an [`observed`](Self::observed)
    /// client, for the [`RetryPolicy`](crate::retry::RetryPolicy) that repeats its calls
    /// (with `http_client_requests_total`, the retry rate).
    pub fn retries(&self) -> Option<crate::metrics::Counter> {
        self.metrics.as_ref().map(|(registry, dependency)| {
            registry.counter(
                "http_client_retries_total",
                "HTTP calls to a dependency made again after a transient failure.",
                &[("dependency", dependency)],
            )
        })
    }

    fn count(&self, r: &Result<HttpResponse, HttpError>, took: Option<Duration>) {
        let Some((registry, dependency)) = &self.metrics else {
            return;
        };
        let code = match r {
            Ok(response) => response.status.to_string(),
            Err(HttpError::Timeout(_)) => "timeout".into(),
            Err(HttpError::Connect { .. }) => "unreachable".into(),
            Err(HttpError::CircuitOpen(_)) => "circuit_open".into(),
            Err(_) => "broken".into(),
        };
        registry
            .counter(
                "http_client_requests_total",
                "HTTP calls to a dependency, by its answer's status (or timeout, unreachable, \
                 broken, circuit_open when none came).",
                &[("dependency", dependency), ("code", &code)],
            )
            .inc();
        if let Some(took) = took {
            registry
                .histogram(
                    "http_client_duration_seconds",
                    "Time of an HTTP call to a dependency (sent calls only).",
                    &[("dependency", dependency)],
                    &crate::metrics::LATENCY_BUCKETS,
                )
                .observe_duration(took);
        }
    }

    /// The same client with `breaker` in front of every exchange: refused at once with
    /// [`HttpError::CircuitOpen`] while it is open, and fed each exchange's outcome
    /// ([`HttpError::is_dependency_failure`], or a 5xx answer).
    pub fn with_breaker(self, breaker: std::sync::Arc<Breaker>) -> Self {
        HttpClient {
            breaker: Some(breaker),
            ..self
        }
    }

    /// The same client, except that its breaker does not hold a timeout against the
    /// dependency: for a caller that waits longer after each timeout (a dependency that
    /// answers late is heard in the end), whose timeouts say its wait was short, not that
    /// the dependency is down. Refused connections and 5xx answers still count.
    pub fn timeouts_uncounted(self) -> Self {
        HttpClient {
            timeouts_count: false,
            ..self
        }
    }

    /// `POST url` with a JSON body and extra headers; decodes a 2xx JSON answer.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &B,
    ) -> Result<R, HttpError> {
        let body = serde_json::to_vec(body).map_err(|e| HttpError::Decode(e.to_string()))?;
        self.call("POST", url, headers, Some(body)).await
    }

    /// `GET url`; decodes a 2xx JSON answer.
    pub async fn get_json<R: DeserializeOwned>(&self, url: &str) -> Result<R, HttpError> {
        self.call("GET", url, &[], None).await
    }

    /// `GET url` with extra headers (e.g. `authorization`); decodes a 2xx JSON answer.
    pub async fn get_json_with<R: DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<R, HttpError> {
        self.call("GET", url, headers, None).await
    }

    /// Sends one request and returns whatever the server answered (any status); an error only
    /// when no answer came.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, HttpError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| HttpError::Decode(e.to_string()))?;
        self.send_bytes(method, url, headers, body.map(|b| (b, "application/json")))
            .await
    }

    /// Sends one request with a body of `content_type` (when given) and returns whatever the
    /// server answered; an error only when no answer came. Headers in `headers` are sent as
    /// they are (an object store checks the signed ones).
    pub async fn send_bytes(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<HttpResponse, HttpError> {
        let permit = match self.breaker.as_deref().map(Breaker::admit).transpose() {
            Ok(p) => p,
            Err(refused) => {
                let r = Err(HttpError::CircuitOpen(refused));
                self.count(&r, None);
                return r;
            }
        };
        let started = tokio::time::Instant::now();
        let timeout = self.timeout;
        let r = match tokio::time::timeout(timeout, self.exchange(method, url, headers, body)).await
        {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(timeout)),
        };
        if let Some(permit) = permit {
            match &r {
                Ok(response) => permit.record(response.status < 500),
                // Not a verdict either way: the permit goes without one.
                Err(HttpError::Timeout(_)) if !self.timeouts_count => drop(permit),
                Err(e) => permit.record(!e.is_dependency_failure()),
            }
        }
        self.count(&r, Some(started.elapsed()));
        r
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<R, HttpError> {
        let body = body.map(|b| (b, "application/json"));
        let response = self.send_bytes(method, url, headers, body).await?;
        if !(200..300).contains(&response.status) {
            return Err(HttpError::Status {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            });
        }
        serde_json::from_slice(&response.body).map_err(|e| HttpError::Decode(e.to_string()))
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<HttpResponse, HttpError> {
        let open = self.open(method, url, headers, body).await?;
        let body = Limited::new(open.body, RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?
            .to_bytes();
        Ok(HttpResponse {
            status: open.status,
            headers: open.headers,
            body,
        })
    }

    /// Sends one request and returns the answer's status and headers within the timeout,
    /// with its body still to read, for as long as it lasts (a stream of events).
    pub async fn stream(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<StreamingResponse, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.open("GET", url, headers, None)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    async fn open(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<StreamingResponse, HttpError> {
        let uri: http::Uri = url.parse().map_err(|_| HttpError::InvalidUrl(url.into()))?;
        let authority = uri
            .authority()
            .ok_or_else(|| HttpError::InvalidUrl(url.into()))?
            .clone();
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let stream = tokio::net::TcpStream::connect(addr.as_str())
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
            super::io::FlushWritten::new(stream),
        ))
        .await
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
        // The connection task ends when the exchange is over (the sender and the body are
        // dropped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority.as_str());
        let has_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if let Some((_, content_type)) = body.as_ref().filter(|_| !has_type) {
            req = req.header(http::header::CONTENT_TYPE, *content_type);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        // The trace the caller works in goes to the dependency too (unless the caller set
        // its own context headers).
        let has_trace = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(crate::trace::TRACEPARENT));
        if let Some(ctx) = crate::trace::current().filter(|_| !has_trace) {
            for (k, v) in ctx.headers() {
                req = req.header(k, v);
            }
        }
        let req = req
            .body(Full::new(Bytes::from(
                body.map(|(b, _)| b).unwrap_or_default(),
            )))
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(StreamingResponse {
            status,
            headers,
            body: resp.into_body(),
        })
    }
}

/// An answer of [`HttpClient::stream`] whose body is still arriving.
#[derive(Debug)]
pub struct StreamingResponse {
    pub status: u16,
    /// Header names lower-case, values that are text.
    pub headers: Vec<(String, String)>,
    pub body: hyper::body::Incoming,
}

impl StreamingResponse {
    /// The next piece of the body; `None` when it ended (or the connection broke).
    pub async fn chunk(&mut self) -> Option<Result<Bytes, HttpError>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue, // trailers
                },
                Err(e) => return Some(Err(HttpError::Protocol(e.to_string()))),
            }
        }
    }
}

/// An answer of [`HttpClient::send`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-case, values that are text.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json<R: DeserializeOwned>(&self) -> Result<R, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod breaker_tests {
    use super::*;
    use crate::breaker::{BreakerPolicy, BreakerState};

    #[tokio::test]
    async fn a_dependency_that_keeps_failing_is_not_called_until_its_breaker_lets_a_probe_go() {
        let breaker = Breaker::shared("psp");
        let registry = crate::metrics::Registry::new();
        let client = HttpClient::new(Duration::from_secs(1))
            .with_breaker(breaker.clone())
            .observed(registry.clone(), "psp");
        let failures = BreakerPolicy::default().failures_to_open;
        // Nothing listens on port 1: each connect is refused.
        for _ in 0..failures {
            let e = client.get_json::<()>("http://127.0.0.1:1/").await;
            assert!(matches!(e, Err(HttpError::Connect { .. })), "{e:?}");
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let e = client.get_json::<()>("http://127.0.0.1:1/").await;
        match e {
            Err(e @ HttpError::CircuitOpen(_)) => {
                assert!(e.is_transient() && !e.is_dependency_failure());
                assert!(e.to_string().starts_with("psp: circuit open"), "{e}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(breaker.refused_total(), 1);
        client.retries().expect("observed").inc();
        let text = registry.render(&[]);
        for line in [
            format!("http_client_requests_total{{code=\"unreachable\",dependency=\"psp\"}} {failures}\n"),
            "http_client_requests_total{code=\"circuit_open\",dependency=\"psp\"} 1\n".into(),
            format!("http_client_duration_seconds_count{{dependency=\"psp\"}} {failures}\n"),
            "http_client_retries_total{dependency=\"psp\"} 1\n".into(),
        ] {
            assert!(text.contains(&line), "{line} not in {text}");
        }
    }

    #[tokio::test]
    async fn timeouts_count_unless_the_caller_is_still_learning_how_long_to_wait() {
        // Accepts connections (the backlog does) and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", silent.local_addr().expect("addr"));
        let failures = BreakerPolicy::default().failures_to_open;
        let patient = Breaker::shared("psp");
        let client = HttpClient::new(Duration::from_millis(20)).with_breaker(patient.clone());
        for _ in 0..failures {
            let e = client
                .clone()
                .timeouts_uncounted()
                .get_json::<()>(&url)
                .await;
            assert!(matches!(e, Err(HttpError::Timeout(_))), "{e:?}");
        }
        assert_eq!(patient.state(), BreakerState::Closed);
        for _ in 0..failures {
            let e = client.get_json::<()>(&url).await;
            assert!(matches!(e, Err(HttpError::Timeout(_))), "{e:?}");
        }
        assert_eq!(patient.state(), BreakerState::Open);
    }

    #[test]
    fn answers_about_the_request_are_not_the_dependencys_failures() {
        let status = |status| HttpError::Status {
            status,
            body: String::new(),
        };
        assert!(status(503).is_dependency_failure());
        assert!(!status(404).is_dependency_failure());
        assert!(!status(429).is_dependency_failure());
        assert!(HttpError::Timeout(Duration::from_secs(1)).is_dependency_failure());
    }
}
