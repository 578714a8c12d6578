//! gRPC call helpers shared by every service: deadlines, idempotency keys and the lazily
//! (re)connected channel. madsim-tonic ignores tower layers, so these live in call helpers
//! and interceptors, never in middleware.

use std::{sync::Mutex, time::Duration};

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

/// A channel to one of a service's instances, connected on first use and dropped after a
/// transport failure, so the next call connects to the next instance (round robin from a
/// random start, so callers spread over the instances and fail over when one dies).
#[derive(Debug)]
pub struct LazyChannel {
    endpoints: Vec<Endpoint>,
    /// The current instance and its channel; the channel is `None` until connected or after
    /// a failure.
    current: Mutex<(usize, Option<Channel>)>,
}

impl LazyChannel {
    /// A channel to the instances at `urls`, separated by commas (e.g.
    /// `http://10.1.3.1:50051,http://10.1.3.2:50051`).
    pub fn new(urls: &str) -> Result<Self, tonic::transport::Error> {
        let endpoints = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|url| {
                Ok(Endpoint::from_shared(url.to_owned())?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(UNARY_DEADLINE))
            })
            .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
        if endpoints.is_empty() {
            // Endpoint's own error for an empty URL.
            Endpoint::from_shared(String::new())?;
        }
        let start = (crate::ids::random_u128() % endpoints.len().max(1) as u128) as usize;
        Ok(LazyChannel {
            endpoints,
            current: Mutex::new((start, None)),
        })
    }

    /// The connected channel.
    pub async fn get(&self) -> Result<Channel, Status> {
        let index = match self.current.lock() {
            Ok(g) => {
                if let Some(c) = &g.1 {
                    return Ok(c.clone());
                }
                g.0
            }
            Err(_) => 0,
        };
        let endpoint = self
            .endpoints
            .get(index)
            .ok_or_else(|| Status::unavailable("no endpoints"))?;
        let c = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                self.advance(index);
                return Err(Status::unavailable(format!("connect: {e}")));
            }
        };
        if let Ok(mut g) = self.current.lock() {
            if g.0 == index {
                g.1 = Some(c.clone());
            }
        }
        Ok(c)
    }

    /// Forget the channel after `status` if it was a transport failure, and move on to the
    /// next instance.
    pub fn on_error(&self, status: &Status) {
        if is_transient(status) {
            let index = self.current.lock().map_or(0, |g| g.0);
            self.advance(index);
        }
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
