//! gRPC call helpers shared by every service: deadlines, idempotency keys and the lazily
//! (re)connected channel. madsim-tonic ignores tower layers, so these live in call helpers
//! and interceptors, never in middleware.

mod mesh;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

#[cfg(not(madsim))]
pub use mesh::ServiceRouter;
pub use mesh::{serve, HANDSHAKES_MAX, HANDSHAKE_TIMEOUT};

use crate::{
    breaker::{Breaker, BreakerPolicy},
    metrics::Registry,
};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
    Request, Status,
};

/// Metadata key carrying the caller's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Bound on an idempotency key's length.
pub use domain::IDEMPOTENCY_KEY_BYTES_MAX;

/// Metadata key of a server's retry hint (whole seconds) on a shed request
/// (`ResourceExhausted` or `Unavailable`); the gateway turns it into `Retry-After`.
pub const RETRY_AFTER_METADATA: &str = "retry-after-s";

/// Deadline of one unary call between services.
pub const UNARY_DEADLINE: Duration = Duration::from_secs(3);

/// A request with a deadline and, if given, an idempotency key in its metadata.
pub fn request<T>(message: T, idempotency_key: Option<&str>) -> Request<T> {
    let mut req = Request::new(message);
    req.set_timeout(UNARY_DEADLINE);
    if let Some(key) = idempotency_key {
        if let Ok(v) = MetadataValue::try_from(key) {
            req.metadata_mut().insert(IDEMPOTENCY_KEY, v);
        }
    }
    req
}

/// The idempotency key of `req`, or `InvalidArgument` naming `service`.
pub fn idempotency_key<T>(service: &str, req: &Request<T>) -> Result<String, Status> {
    let v = req.metadata().get(IDEMPOTENCY_KEY).ok_or_else(|| {
        Status::invalid_argument(format!("{service}: missing `{IDEMPOTENCY_KEY}` metadata"))
    })?;
    v.to_str()
        .map_err(|_| domain::InvalidInput::IdempotencyKey)
        .and_then(domain::IdempotencyKey::parse)
        .map(|k| k.as_str().to_owned())
        .map_err(|e| Status::invalid_argument(format!("{service}: `{IDEMPOTENCY_KEY}`: {e}")))
}

/// Checks that the id field `field` is 1..=64 visible ASCII characters (no spaces, no
/// control characters: PostgreSQL text cannot hold a NUL), or `InvalidArgument` naming
/// `service`.
pub fn require_id(service: &str, field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty()
        || value.len() > ID_BYTES_MAX
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Status::invalid_argument(format!(
            "{service}: {field} must be 1..={ID_BYTES_MAX} visible ASCII characters"
        )));
    }
    Ok(())
}

/// The gRPC answer for a store failure in `service` (see [`crate::errors`]): `Unavailable`
/// or `Aborted` when a retry can help; otherwise `Internal`, logged here with its cause and
/// answered without it.
pub fn store_status(service: &str, e: crate::ports::StoreError) -> Status {
    use crate::ports::StoreError;
    match e {
        StoreError::Unavailable(m) => {
            tracing::warn!(%service, error = %m, "database unavailable");
            Status::unavailable(format!("{service}: database unavailable"))
        }
        StoreError::Conflict { .. } | StoreError::Duplicate { .. } => {
            Status::aborted(format!("{service}: concurrent update, retry"))
        }
        StoreError::Fatal(m) => {
            tracing::error!(%service, error = %m, "database error");
            Status::internal(format!("{service}: internal error"))
        }
    }
}

/// Bound on an entity id carried in a request.
pub const ID_BYTES_MAX: usize = 64;

/// Whether a failed call may succeed when retried.
pub fn is_transient(status: &Status) -> bool {
    use tonic::Code::*;
    matches!(
        status.code(),
        Unavailable | DeadlineExceeded | ResourceExhausted | Aborted | Unknown | Cancelled
    )
}

/// Whether `status` says the peer itself is in trouble (unreachable, past the deadline, or
/// failing in a way a retry may fix), as a circuit breaker counts it. A refusal of the
/// request (`NotFound`, `InvalidArgument`, a conflict's `Aborted`) or load shedding
/// (`ResourceExhausted`, a fast answer with its own retry hint) shows a peer that answers.
pub fn is_peer_failure(status: &Status) -> bool {
    use tonic::Code::*;
    matches!(
        status.code(),
        Unavailable | DeadlineExceeded | Unknown | Cancelled
    )
}

/// The answer for a call refused by an open circuit breaker: `Unavailable` with the time
/// until the next probe as the retry hint ([`RETRY_AFTER_METADATA`], whole seconds, at
/// least 1).
pub fn circuit_open(refused: &crate::breaker::Refused) -> Status {
    let mut status = Status::unavailable(format!("{}: circuit open", refused.dependency));
    let seconds = refused.retry_after.as_millis().div_ceil(1000).max(1);
    if let Ok(v) = MetadataValue::try_from(seconds.to_string()) {
        status.metadata_mut().insert(RETRY_AFTER_METADATA, v);
    }
    status
}

/// A channel to one of a service's instances, connected on first use and dropped after a
/// transport failure, so the next call connects to the next instance (round robin from a
/// random start, so callers spread over the instances and fail over when one dies).
///
/// Each instance has its own circuit breaker ([`crate::breaker`]): an instance whose
/// breaker is open is passed over, and when every one is open the call is refused at once
/// ([`circuit_open`]) instead of waiting out a deadline.
#[derive(Debug)]
pub struct LazyChannel {
    endpoints: Vec<Endpoint>,
    breakers: Vec<Arc<Breaker>>,
    /// Where calls are counted and timed, and under which peer name.
    metrics: Option<(Arc<Registry>, String)>,
    /// The current instance and its channel; the channel is `None` until connected or after
    /// a failure.
    current: Mutex<(usize, Option<Channel>)>,
    /// Mutual TLS to the instances, if any ([`LazyChannel::secured`]).
    tls: Option<Arc<crate::tls::Tls>>,
}

impl LazyChannel {
    /// A channel to the instances at `urls`, separated by commas (e.g.
    /// `http://10.1.3.1:50051,http://10.1.3.2:50051`), with the default breaker policy.
    pub fn new(urls: &str) -> Result<Self, tonic::transport::Error> {
        Self::with_policy(urls, BreakerPolicy::default())
    }

    /// As [`LazyChannel::new`], with `policy` for every instance's breaker.
    pub fn with_policy(urls: &str, policy: BreakerPolicy) -> Result<Self, tonic::transport::Error> {
        let urls: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let endpoints = urls
            .iter()
            .map(|url| {
                Ok(Endpoint::from_shared((*url).to_owned())?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(UNARY_DEADLINE))
            })
            .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
        if endpoints.is_empty() {
            // Endpoint's own error for an empty URL.
            Endpoint::from_shared(String::new())?;
        }
        let breakers = urls
            .iter()
            .map(|url| Arc::new(Breaker::new(*url, policy.clone())))
            .collect();
        let start = (crate::ids::random_u128() % endpoints.len().max(1) as u128) as usize;
        Ok(LazyChannel {
            endpoints,
            breakers,
            metrics: None,
            current: Mutex::new((start, None)),
            tls: None,
        })
    }

    /// The same channel, its calls counted and timed in `registry` as calls to `peer`
    /// (`rpc_client_requests_total` by code, `rpc_client_duration_seconds`), its instances'
    /// breakers exposed there too.
    pub fn observed(mut self, registry: &Arc<Registry>, peer: &str) -> Self {
        for b in &self.breakers {
            registry.watch_breaker(b.clone());
        }
        self.metrics = Some((registry.clone(), peer.to_owned()));
        self
    }

    /// The same channel over mutual TLS when `tls` is given: this instance's certificate
    /// presented, the peers' checked against the CA and the URLs' hosts.
    pub fn secured(mut self, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        self.tls = tls;
        self
    }

    /// The instances' breakers, in the order of the URLs.
    pub fn breakers(&self) -> &[Arc<Breaker>] {
        &self.breakers
    }

    /// One call to an instance: `f` gets the channel (a unary call, or the opening of a
    /// stream). Its outcome feeds the instance's breaker ([`is_peer_failure`]); a transient
    /// failure moves later calls on to the next instance. Refused at once when every
    /// instance's breaker is open.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let started = tokio::time::Instant::now();
        let r = self.call_once(f).await;
        if let Some((registry, peer)) = &self.metrics {
            let code = match &r {
                Ok(_) => "Ok".to_owned(),
                Err(e) => format!("{:?}", e.code()),
            };
            registry
                .counter(
                    "rpc_client_requests_total",
                    "gRPC calls made, by peer and status code (refusals of an open breaker \
                     are Unavailable).",
                    &[("peer", peer), ("code", &code)],
                )
                .inc();
            registry
                .histogram(
                    "rpc_client_duration_seconds",
                    "Time of a gRPC call (or of opening a stream), by peer.",
                    &[("peer", peer)],
                    &crate::metrics::LATENCY_BUCKETS,
                )
                .observe_duration(started.elapsed());
        }
        r
    }

    async fn call_once<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let (index, permit) = self.pick()?;
        let channel = match self.channel(index).await {
            Ok(c) => c,
            Err(e) => {
                permit.failed();
                self.advance(index);
                return Err(e);
            }
        };
        let r = f(channel).await;
        match &r {
            Ok(_) => permit.succeeded(),
            Err(e) => {
                permit.record(!is_peer_failure(e));
                if is_transient(e) {
                    self.advance(index);
                }
            }
        }
        r
    }

    /// The first instance from the current one whose breaker lets a call go, made current.
    fn pick(&self) -> Result<(usize, crate::breaker::Permit<'_>), Status> {
        let n = self.endpoints.len();
        let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut soonest: Option<crate::breaker::Refused> = None;
        for k in 0..n {
            let index = (g.0 + k) % n;
            let Some(breaker) = self.breakers.get(index) else {
                continue;
            };
            match breaker.admit() {
                Ok(permit) => {
                    if index != g.0 {
                        *g = (index, None);
                    }
                    return Ok((index, permit));
                }
                Err(refused) => {
                    if soonest
                        .as_ref()
                        .is_none_or(|s| refused.retry_after < s.retry_after)
                    {
                        soonest = Some(refused);
                    }
                }
            }
        }
        Err(soonest.map_or_else(|| Status::unavailable("no endpoints"), |r| circuit_open(&r)))
    }

    /// The channel to instance `index`, connecting if needed.
    async fn channel(&self, index: usize) -> Result<Channel, Status> {
        if let Ok(g) = self.current.lock() {
            if g.0 == index {
                if let Some(c) = &g.1 {
                    return Ok(c.clone());
                }
            }
        }
        let endpoint = self
            .endpoints
            .get(index)
            .ok_or_else(|| Status::unavailable("no endpoints"))?;
        let c = mesh::connect(endpoint, self.tls.as_ref())
            .await
            .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
        if let Ok(mut g) = self.current.lock() {
            if g.0 == index {
                g.1 = Some(c.clone());
            }
        }
        Ok(c)
    }

    /// Moves from instance `from` to the next one (unless another caller already moved).
    fn advance(&self, from: usize) {
        if let Ok(mut g) = self.current.lock() {
            if g.0 == from {
                g.0 = (from + 1) % self.endpoints.len().max(1);
                g.1 = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn instances_that_keep_failing_are_passed_over_then_refused_at_once() {
        // Nothing listens on these ports: every connect is refused.
        let peer = LazyChannel::new("http://127.0.0.1:1,http://127.0.0.1:2").expect("urls");
        let failures = BreakerPolicy::default().failures_to_open as usize;
        for _ in 0..2 * failures {
            let e = peer
                .call(|_| async { Ok::<_, Status>(()) })
                .await
                .expect_err("nothing listens");
            assert!(e.message().starts_with("connect"), "{e:?}");
        }
        assert!(peer
            .breakers()
            .iter()
            .all(|b| b.state() == crate::breaker::BreakerState::Open));
        let started = tokio::time::Instant::now();
        let refused = peer
            .call(|_| async { Ok::<_, Status>(()) })
            .await
            .expect_err("every breaker is open");
        assert!(started.elapsed() < Duration::from_millis(50));
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().ends_with("circuit open"), "{refused:?}");
        let hint = refused
            .metadata()
            .get(RETRY_AFTER_METADATA)
            .and_then(|v| v.to_str().ok());
        assert_eq!(hint, Some("1"));
        assert!(is_transient(&refused), "the retry helper goes on after it");
    }

    #[test]
    fn refusals_of_the_request_do_not_count_against_the_peer() {
        assert!(is_peer_failure(&Status::unavailable("down")));
        assert!(is_peer_failure(&Status::deadline_exceeded("late")));
        assert!(!is_peer_failure(&Status::not_found("no order")));
        assert!(!is_peer_failure(&Status::aborted("conflict")));
        assert!(!is_peer_failure(&Status::resource_exhausted("shed")));
    }
}

/// A tower layer counting and timing the gRPC requests a server answers, by method and
/// status code (`rpc_server_requests_total`, `rpc_server_duration_seconds`), in the
/// instance's registry. A unary call's status is in its response head when it failed
/// (trailers-only); an answer without one succeeded, or is a stream that opened. In the
/// simulation madsim-tonic ignores layers, so nothing is counted there.
#[derive(Clone, Debug)]
pub struct ServerMetricsLayer {
    registry: Arc<Registry>,
}

impl ServerMetricsLayer {
    pub fn new(registry: Arc<Registry>) -> Self {
        ServerMetricsLayer { registry }
    }
}

impl<S> tower::Layer<S> for ServerMetricsLayer {
    type Service = ServerMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerMetrics {
            inner,
            registry: self.registry.clone(),
        }
    }
}

/// The service [`ServerMetricsLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct ServerMetrics<S> {
    inner: S,
    registry: Arc<Registry>,
}

/// The status code a gRPC response head carries (`Ok` without one).
pub fn status_of_head(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from)
}

impl<S, B, R> tower::Service<http::Request<B>> for ServerMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let registry = self.registry.clone();
        let started = tokio::time::Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            let code = match &r {
                Ok(response) => status_of_head(response.headers()),
                Err(_) => tonic::Code::Unknown,
            };
            // A path no service knows is one series, whatever a client makes up.
            let method = if code == tonic::Code::Unimplemented {
                "unknown"
            } else {
                path.as_str()
            };
            registry
                .counter(
                    "rpc_server_requests_total",
                    "gRPC requests answered, by method and status code.",
                    &[("method", method), ("code", &format!("{code:?}"))],
                )
                .inc();
            registry
                .histogram(
                    "rpc_server_duration_seconds",
                    "Time from a gRPC request to its response head, by method.",
                    &[("method", method)],
                    &crate::metrics::LATENCY_BUCKETS,
                )
                .observe_duration(started.elapsed());
            r
        })
    }
}
