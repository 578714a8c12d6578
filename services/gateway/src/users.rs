//! Accounts and sessions: the REST face of the user service.

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use contracts::user::{
    user_service_client::UserServiceClient, LoginRequest, RefreshRequest, RegisterRequest, Session,
    UpdateProfileRequest, User, UserRef,
};
use platform::{
    grpc,
    http::{ApiJson, PeerAddr, Problem},
};
use serde::{Deserialize, Serialize};

use crate::{auth::Caller, errors::problem, AppState};

const SERVICE: &str = "user";

/// The body of `POST /v1/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[schema(min_length = 3, max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub display_name: String,
}

/// The body of `POST /v1/sessions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(min_length = 3, max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

/// The body of `POST /v1/sessions/refresh` and `/v1/sessions/logout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    #[schema(min_length = 1, max_length = 128)]
    pub refresh_token: String,
}

/// The body of `PATCH /v1/users/me`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub display_name: String,
}

/// A user as clients see it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub created_ms: i64,
}

/// A session (RFC 6749's token response, plus the user's id).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SessionView {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u32,
    pub refresh_token: String,
    pub user_id: String,
}

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn user_response(status: StatusCode, u: User) -> Response {
    let tag = etag(u.version);
    let view = UserView {
        user_id: u.user_id,
        email: u.email,
        display_name: u.display_name,
        created_ms: u.created_ms,
    };
    (
        status,
        [
            (header::ETAG, tag),
            (header::CACHE_CONTROL, "private, no-cache".to_owned()),
        ],
        Json(view),
    )
        .into_response()
}

fn session_response(s: Session) -> Response {
    let view = SessionView {
        access_token: s.access_token,
        token_type: "Bearer".into(),
        expires_in: s.expires_in_s,
        refresh_token: s.refresh_token,
        user_id: s.user_id,
    };
    // Token responses must not be cached (RFC 6749 §5.1).
    ([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response()
}

fn failed() -> impl Fn(tonic::Status) -> Problem {
    move |e| problem(SERVICE, e)
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The account", body = UserView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 409, description = "The email (any case) has an account", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, Problem> {
    let req = RegisterRequest {
        email: body.email,
        password: body.password,
        display_name: body.display_name,
    };
    let user = st
        .user
        .call(|ch| async move {
            UserServiceClient::with_interceptor(ch, platform::trace::inject)
                .register(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    let mut response = user_response(StatusCode::CREATED, user);
    response.headers_mut().insert(
        header::LOCATION,
        header::HeaderValue::from_static("/v1/users/me"),
    );
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "users",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A session", body = SessionView),
        (status = 401, description = "Wrong email or password", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login(
    State(st): State<AppState>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, Problem> {
    let req = LoginRequest {
        email: body.email,
        password: body.password,
        client_address: peer.ip().to_string(),
    };
    let session = st
        .user
        .call(|ch| async move {
            UserServiceClient::with_interceptor(ch, platform::trace::inject)
                .login(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    Ok(session_response(session))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/refresh",
    tag = "users",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "A new session; the token presented is spent", body = SessionView),
        (status = 401, description = "Unknown, spent, expired or revoked refresh token", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn refresh(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response, Problem> {
    let req = RefreshRequest {
        refresh_token: body.refresh_token,
    };
    let session = st
        .user
        .call(|ch| async move {
            UserServiceClient::with_interceptor(ch, platform::trace::inject)
                .refresh(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    Ok(session_response(session))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/logout",
    tag = "users",
    request_body = RefreshBody,
    responses(
        (status = 204, description = "The session family is revoked"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, Problem> {
    let req = RefreshRequest {
        refresh_token: body.refresh_token,
    };
    st.user
        .call(|ch| async move {
            UserServiceClient::with_interceptor(ch, platform::trace::inject)
                .logout(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = UserView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 404, description = "The account is gone", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn me(State(st): State<AppState>, caller: Caller) -> Result<Response, Problem> {
    let req = UserRef {
        user_id: caller.user_id,
    };
    let user = st
        .user
        .call(|ch| async move {
            UserServiceClient::with_interceptor(ch, platform::trace::inject)
                .get_profile(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    Ok(user_response(StatusCode::OK, user))
}

/// The version an `If-Match` header names (`"3"`), 0 without one.
fn if_match(headers: &HeaderMap) -> Result<i64, Problem> {
    match headers.get(header::IF_MATCH) {
        None => Ok(0),
        Some(v) => crate::ads::etag_version(v),
    }
}

#[utoipa::path(
    patch,
    path = "/v1/users/me",
    tag = "users",
    request_body = ProfileBody,
    params(("If-Match" = Option<String>, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated profile", body = UserView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 404, description = "The account is gone", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Concurrent updates", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "If-Match is stale", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_me(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Response, Problem> {
    let req = UpdateProfileRequest {
        user_id: caller.user_id,
        display_name: body.display_name,
        expected_version: if_match(&headers)?,
    };
    let user = st
        .user
        .call(|ch| async move {
            UserServiceClient::with_interceptor(ch, platform::trace::inject)
                .update_profile(grpc::request(req, None))
                .await
        })
        .await
        .map_err(|e| {
            if e.code() == tonic::Code::FailedPrecondition {
                Problem::new(
                    StatusCode::PRECONDITION_FAILED,
                    "Precondition Failed",
                    e.message(),
                )
            } else {
                problem(SERVICE, e)
            }
        })?
        .into_inner();
    Ok(user_response(StatusCode::OK, user))
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "users",
    responses(
        (status = 200, description = "The public keys access tokens are signed with", body = crate::openapi::JwksDoc),
    )
)]
pub(crate) async fn jwks(State(st): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(st.keys.current().jwks()),
    )
        .into_response()
}
