//! Bearer authentication at the edge: the gateway verifies access tokens with the public keys
//! the user service publishes, and nothing else (it holds no private key and asks no service
//! per request). The key cache is `auth::cache`'s, shared with the live-notification
//! endpoints. Until a key set has been fetched at all, authenticated routes answer 503, not
//! 401: the token may be fine.

use auth::cache::Rejected;
use axum::{
    async_trait,
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use platform::http::Problem;

pub use auth::cache::KeyCache;

use crate::AppState;

/// The answer to a token `KeyCache::verify` did not accept.
pub fn problem(rejected: Rejected) -> Problem {
    match rejected {
        Rejected::Unavailable => {
            Problem::unavailable("the gateway cannot check access tokens yet; retry")
        }
        Rejected::Invalid(e) => Problem::unauthorized(Some("invalid_token"), e.to_string()),
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
            .map_err(|_| "the Authorization header is not text")
            .and_then(auth::cache::bearer)
            .map_err(|e| Problem::unauthorized(Some("invalid_request"), e))?;
        let claims = st.keys.verify(token).await.map_err(problem)?;
        Ok(Caller {
            user_id: claims.sub,
        })
    }
}
