use axum::{
    async_trait,
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// An RFC 9457 problem document, served as `application/problem+json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 429 and 503.
    #[serde(skip)]
    pub retry_after_s: Option<u32>,
    /// The `WWW-Authenticate` challenge of a 401.
    #[serde(skip)]
    pub www_authenticate: Option<String>,
}

impl Problem {
    /// A problem with `status`, a short `title` and a `detail` for the client.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
            www_authenticate: None,
        }
    }
    /// 500 Internal Server Error. It says nothing more: what went wrong stays in the log.
    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "something went wrong on our side; it has been logged",
        )
    }
    /// 409 Conflict.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "Conflict", detail)
    }
    /// 422 Unprocessable Entity: well-formed input that breaks a rule.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            detail,
        )
    }
    /// 429 Too Many Requests, to retry after `retry_after_s`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_s: u32) -> Self {
        Problem {
            retry_after_s: Some(retry_after_s),
            ..Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", detail)
        }
    }
    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }
    /// 401 Unauthorized with a Bearer challenge (RFC 6750): `error` is `invalid_token` for a
    /// token that was presented and refused, `None` when none was.
    pub fn unauthorized(error: Option<&str>, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let challenge = match error {
            None => "Bearer realm=\"marketplace\"".to_owned(),
            Some(e) => format!(
                "Bearer realm=\"marketplace\", error=\"{e}\", error_description=\"{}\"",
                detail.replace(['"', '\\'], "'")
            ),
        };
        Problem {
            www_authenticate: Some(challenge),
            ..Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
        }
    }
    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }
    /// 503 Service Unavailable: a dependency is down; the client may retry (after 1 s).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem {
            retry_after_s: Some(1),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                detail,
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(challenge) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| header::HeaderValue::from_str(c).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        response
    }
}

/// A JSON body extractor whose rejections are problem+json 4xx answers.
pub struct ApiJson<T>(pub T);

#[async_trait]
impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(e) => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported Media Type",
                    e.body_text(),
                ),
                JsonRejection::JsonDataError(e) => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable Entity",
                    e.body_text(),
                ),
                other => {
                    let status = other.status();
                    Problem::new(
                        status,
                        status.canonical_reason().unwrap_or("Bad Request"),
                        other.body_text(),
                    )
                }
            }),
        }
    }
}
