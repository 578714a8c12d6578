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
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

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
    let s = v.to_str().map_err(|_| {
        Status::invalid_argument(format!("{service}: `{IDEMPOTENCY_KEY}` is not ASCII"))
    })?;
    if s.is_empty() || s.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "{service}: `{IDEMPOTENCY_KEY}` must be 1..={IDEMPOTENCY_KEY_BYTES_MAX} bytes"
        )));
    }
    Ok(s.to_owned())
}

/// Checks that the id field `field` is 1..=64 bytes, or `InvalidArgument` naming `service`.
pub fn require_id(service: &str, field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() || value.len() > ID_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "{service}: {field} must be 1..={ID_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// The gRPC answer for a store failure in `service`.
pub fn store_status(service: &str, e: crate::ports::StoreError) -> Status {
    use crate::ports::StoreError;
    match e {
        StoreError::Unavailable(m) => Status::unavailable(format!("{service}: database: {m}")),
        StoreError::Conflict { .. } => {
            Status::aborted(format!("{service}: concurrent update, retry"))
        }
        other => Status::internal(format!("{service}: {other}")),
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

/// A channel connected on first use and dropped after a transport failure, so the next call
/// reconnects (the peer may have restarted).
#[derive(Debug)]
pub struct LazyChannel {
    endpoint: Endpoint,
    /// The current channel; `None` until connected or after a failure.
    channel: Mutex<Option<Channel>>,
}

impl LazyChannel {
    /// A channel to `url` (e.g. `http://10.1.3.1:50051`).
    pub fn new(url: &str) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(UNARY_DEADLINE);
        Ok(LazyChannel {
            endpoint,
            channel: Mutex::new(None),
        })
    }

    /// The connected channel.
    pub async fn get(&self) -> Result<Channel, Status> {
        if let Some(c) = self.channel.lock().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        let c = self
            .endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
        if let Ok(mut g) = self.channel.lock() {
            *g = Some(c.clone());
        }
        Ok(c)
    }

    /// Forget the channel after `status` if it was a transport failure.
    pub fn on_error(&self, status: &Status) {
        if is_transient(status) {
            if let Ok(mut g) = self.channel.lock() {
                *g = None;
            }
        }
    }
}
