//! A verifier's copy of the user service's public keys, kept fresh — shared by every edge
//! that checks access tokens (the gateway, the live-notification endpoints).
//!
//! The set is fetched at start, re-fetched every [`REFRESH`], and re-fetched on demand when
//! a token names a key the verifier does not know yet (a rotation), at most once per
//! [`REFETCH_MIN`], so tokens with made-up key ids cannot make it hammer the user service.
//! Until a set has been fetched at all, verification answers [`Rejected::Unavailable`], not
//! "invalid": the token may be fine.
//!
//! Keys are fetched by a [`FetchKeys`]: [`from_user_service`] asks the user service over gRPC
//! (production and the simulation alike); tests may hand in their own.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::{AuthError, Claims, KeySet, PublicKey};

/// How often the key set is re-fetched.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Least time between two on-demand fetches.
pub const REFETCH_MIN: Duration = Duration::from_secs(5);

/// Fetches the current public keys (the error is for logs).
pub type FetchKeys =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<PublicKey>, String>> + Send + Sync>;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// No key set has been fetched yet: the caller should answer "retry later".
    #[error("access tokens cannot be checked yet; retry")]
    Unavailable,
    /// The token is not valid.
    #[error(transparent)]
    Invalid(#[from] AuthError),
}

/// The verifier's key set, fetched with a [`FetchKeys`].
pub struct KeyCache {
    fetch_keys: FetchKeys,
    set: std::sync::RwLock<Arc<KeySet>>,
    /// When the last fetch was tried; serializes fetches.
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    pub fn new(fetch_keys: FetchKeys) -> Self {
        KeyCache {
            fetch_keys,
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
    async fn fetch(&self, min_gap: Duration) -> Result<(), String> {
        let mut last = self.fetched.lock().await;
        if last.is_some_and(|t| t.elapsed() < min_gap) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let keys = (self.fetch_keys)().await?;
        let set = KeySet::new(&keys).map_err(|e| e.to_string())?;
        if let Ok(mut s) = self.set.write() {
            *s = Arc::new(set);
        }
        Ok(())
    }

    /// Keeps the set fresh until `stop` resolves: every second until the first fetch
    /// succeeds, then every [`REFRESH`].
    pub async fn keep_fresh(self: Arc<Self>, stop: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(stop);
        loop {
            let wait = match self.fetch(Duration::ZERO).await {
                Ok(()) => REFRESH,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot fetch the signing keys yet");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The claims of a valid `token`.
    pub async fn verify(&self, token: &str) -> Result<Claims, Rejected> {
        let kid = KeySet::kid_of(token)?;
        if !self.current().has(&kid) {
            if let Err(e) = self.fetch(REFETCH_MIN).await {
                tracing::debug!(error = %e, "on-demand key fetch failed");
            }
        }
        let set = self.current();
        if set.is_empty() {
            return Err(Rejected::Unavailable);
        }
        Ok(set.verify(token)?)
    }
}

/// The token of an `Authorization: Bearer <token>` header value; the error says what is
/// wrong with it.
pub fn bearer(value: &str) -> Result<&str, &'static str> {
    value
        .split_once(' ')
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()))
        .filter(|t| !t.is_empty())
        .ok_or("the Authorization header must be `Bearer <token>`")
}

/// Fetches the key set from the user service's `SigningKeys` over `user`.
pub fn from_user_service(user: Arc<platform::grpc::LazyChannel>) -> FetchKeys {
    use contracts::user::{user_service_client::UserServiceClient, SigningKeysRequest};
    Arc::new(move || {
        let user = user.clone();
        Box::pin(async move {
            let reply = user
                .call(|channel| async move {
                    UserServiceClient::with_interceptor(channel, platform::trace::inject)
                        .signing_keys(platform::grpc::request(SigningKeysRequest {}, None))
                        .await
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            Ok(reply
                .keys
                .into_iter()
                .map(|k| PublicKey {
                    kid: k.kid,
                    x: k.x,
                    created_ms: k.created_ms,
                })
                .collect())
        })
    })
}
