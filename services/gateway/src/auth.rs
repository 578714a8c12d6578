//! Bearer authentication at the edge: the gateway verifies access tokens with the public keys
//! the user service publishes, and nothing else (it holds no private key and asks no service
//! per request).
//!
//! The key set is fetched at start, re-fetched every [`REFRESH`], and re-fetched on demand
//! when a token names a key the gateway does not know yet (a rotation), at most once per
//! [`REFETCH_MIN`], so tokens with made-up key ids cannot make it hammer the user service.
//! Until a set has been fetched at all, authenticated routes answer 503, not 401: the token
//! may be fine.

use std::{sync::Arc, time::Duration};

use auth::{AuthError, Claims, KeySet, PublicKey};
use axum::{
    async_trait,
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use contracts::user::{user_service_client::UserServiceClient, SigningKeysRequest};
use platform::{grpc::LazyChannel, http::Problem, Shutdown};
use tokio::time::Instant;

use crate::AppState;

/// How often the key set is re-fetched.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Least time between two on-demand fetches.
pub const REFETCH_MIN: Duration = Duration::from_secs(5);

/// The gateway's copy of the user service's public keys.
pub struct KeyCache {
    user: Arc<LazyChannel>,
    set: std::sync::RwLock<Arc<KeySet>>,
    /// When the last fetch was tried; serializes fetches.
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    pub fn new(user: Arc<LazyChannel>) -> Self {
        KeyCache {
            user,
            set: std::sync::RwLock::new(Arc::new(KeySet::default())),
            fetched: tokio::sync::Mutex::new(None),
        }
    }

    /// The current set.
    pub fn current(&self) -> Arc<KeySet> {
        self.set
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Arc::new(KeySet::default()))
    }

    /// Fetches the set, unless another fetch happened within `min_gap`.
    async fn fetch(&self, min_gap: Duration) -> Result<(), tonic::Status> {
        let mut last = self.fetched.lock().await;
        if last.is_some_and(|t| t.elapsed() < min_gap) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let channel = self.user.get().await?;
        let reply = UserServiceClient::new(channel)
            .signing_keys(platform::grpc::request(SigningKeysRequest {}, None))
            .await
            .inspect_err(|e| self.user.on_error(e))?
            .into_inner();
        let keys: Vec<PublicKey> = reply
            .keys
            .into_iter()
            .map(|k| PublicKey {
                kid: k.kid,
                x: k.x,
                created_ms: k.created_ms,
            })
            .collect();
        let set = KeySet::new(&keys).map_err(|e| tonic::Status::internal(e.to_string()))?;
        if let Ok(mut s) = self.set.write() {
            *s = Arc::new(set);
        }
        Ok(())
    }

    /// Keeps the set fresh until `shutdown`: every second until the first fetch succeeds,
    /// then every [`REFRESH`].
    pub async fn keep_fresh(self: Arc<Self>, shutdown: Shutdown) {
        while !shutdown.is_requested() {
            let wait = match self.fetch(Duration::ZERO).await {
                Ok(()) => REFRESH,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot fetch the signing keys yet");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The claims of a valid `token`, or the answer to give.
    pub async fn verify(&self, token: &str) -> Result<Claims, Problem> {
        let refused = |e: AuthError| Problem::unauthorized(Some("invalid_token"), e.to_string());
        let kid = KeySet::kid_of(token).map_err(refused)?;
        if !self.current().has(&kid) {
            if let Err(e) = self.fetch(REFETCH_MIN).await {
                tracing::debug!(error = %e, "on-demand key fetch failed");
            }
        }
        let set = self.current();
        if set.is_empty() {
            return Err(Problem::unavailable(
                "the gateway cannot check access tokens yet; retry",
            ));
        }
        set.verify(token).map_err(refused)
    }
}

/// The authenticated caller of a route: the subject of a valid access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
}

#[async_trait]
impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                None,
                "this route needs an access token (Authorization: Bearer <token>)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized(
                    Some("invalid_request"),
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        let claims = st.keys.verify(token).await?;
        Ok(Caller {
            user_id: claims.sub,
        })
    }
}
