//! Ads: the REST face of the ad service, with HTTP caching and optimistic concurrency.
//!
//! - `GET` answers with `ETag: "<version>"` and `Cache-Control`; `If-None-Match` with the
//!   current tag answers 304 without a body.
//! - `PUT`, `PATCH` and `DELETE` need `If-Match` with the tag the client last read: 428
//!   without one, 412 when the ad changed since. Only the owner edits (403 otherwise).
//! - `POST` takes an `Idempotency-Key`, scoped to the caller like an order's.
//! - Who sees what: an ACTIVE ad, everyone; a HIDDEN ad, its owner only (404 for others); a
//!   BANNED ad, its owner (410 Gone for others); a DELETED ad, no one (404).

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use contracts::ad::{
    ad_service_client::AdServiceClient, Ad, AdFields, AdRef, AdStatus, CreateAdRequest,
    DeleteAdRequest, UpdateAdRequest,
};
use platform::{
    grpc,
    http::{ApiJson, Problem},
};
use serde::{Deserialize, Serialize};

use crate::{auth::Caller, errors::problem, AppState};

const SERVICE: &str = "ad";

/// A price as clients write it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub amount_minor: i64,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// The body of `POST /v1/ads` and `PUT /v1/ads/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    pub price: Price,
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub category: String,
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub region: String,
    /// Ids of photos the ad has, in display order: an update may drop or reorder them, and
    /// a new ad has none (photos are added by uploading them).
    #[serde(default)]
    #[schema(max_items = 10)]
    pub photos: Vec<String>,
    /// `ACTIVE` (the default) or `HIDDEN`; PUT only.
    #[serde(default)]
    #[schema(pattern = "^(ACTIVE|HIDDEN)$")]
    pub status: Option<String>,
}

/// The body of `PATCH /v1/ads/{id}`: the fields to change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    pub price: Option<Price>,
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub category: Option<String>,
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub region: Option<String>,
    /// Ids of photos the ad has, in display order (drop or reorder only).
    #[schema(max_items = 10)]
    pub photos: Option<Vec<String>>,
    #[schema(pattern = "^(ACTIVE|HIDDEN)$")]
    pub status: Option<String>,
}

/// An ad as clients see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AdView {
    pub ad_id: String,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub price: Price,
    pub category: String,
    pub region: String,
    pub photos: Vec<String>,
    pub status: String,
    pub version: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl From<Ad> for AdView {
    fn from(a: Ad) -> Self {
        let status = a.status().api_name().to_owned();
        let f = a.fields.unwrap_or_default();
        AdView {
            ad_id: a.ad_id,
            owner_id: a.owner_id,
            title: f.title,
            description: f.description,
            price: Price {
                amount_minor: f.price_minor,
                currency: f.currency,
            },
            category: f.category,
            region: f.region,
            photos: f.photos,
            status,
            version: a.version,
            created_ms: a.created_ms,
            updated_ms: a.updated_ms,
        }
    }
}

/// The strong entity tag of `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Whether an `If-None-Match` value matches `tag` (a list of tags, weak ones compared
/// weakly, or `*`).
pub fn none_match(value: &str, tag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// The version an ETag this API gave (`"3"`) names; 400 for any other value.
pub(crate) fn etag_version(v: &header::HeaderValue) -> Result<i64, Problem> {
    v.to_str()
        .ok()
        .and_then(|s| {
            s.trim()
                .strip_prefix('"')?
                .strip_suffix('"')?
                .parse::<i64>()
                .ok()
        })
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            Problem::bad_request("If-Match must be an ETag this API gave, such as \"3\"")
        })
}

/// The version an `If-Match` names: 428 without one, 400 for one this API never gave.
fn if_match(headers: &HeaderMap) -> Result<i64, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "Precondition Required",
            "changing an ad needs If-Match with the ETag you last read",
        ));
    };
    etag_version(v)
}

fn stale(current: i64) -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "Precondition Failed",
        format!("the ad changed: it is at ETag \"{current}\"; read it again"),
    )
}

/// Sends `req` to the ad service, forgets the cached card, and answers the new ad.
async fn updated(st: &AppState, req: UpdateAdRequest) -> Result<Response, Problem> {
    let ad = st
        .ad
        .call(|ch| async move {
            AdServiceClient::with_interceptor(ch, platform::trace::inject)
                .update_ad(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    st.cache.invalidate(&ad.ad_id, 0);
    Ok(ad_response(StatusCode::OK, ad))
}

fn failed() -> impl Fn(tonic::Status) -> Problem {
    move |e| {
        match e.code() {
            // Checked against the version read just before: the ad changed in between.
            tonic::Code::FailedPrecondition => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "Precondition Failed",
                e.message(),
            ),
            _ => problem(SERVICE, e),
        }
    }
}

/// The ad `id` as `caller` may see it, or 404.
pub(crate) async fn visible(
    st: &AppState,
    id: &str,
    caller: Option<&Caller>,
) -> Result<Ad, Problem> {
    let not_found = || Problem::not_found(format!("{SERVICE}: no ad {id}"));
    if id.is_empty() || id.len() > grpc::ID_BYTES_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not_found());
    }
    let ad = st
        .ad
        .call(|ch| async move {
            AdServiceClient::with_interceptor(ch, platform::trace::inject)
                .get_ad(grpc::request(
                    AdRef {
                        ad_id: id.to_owned(),
                    },
                    None,
                ))
                .await
        })
        .await
        .map_err(|e| match e.code() {
            tonic::Code::NotFound | tonic::Code::InvalidArgument => not_found(),
            _ => failed()(e),
        })?
        .into_inner();
    let owner = caller.is_some_and(|c| c.user_id == ad.owner_id);
    match ad.status() {
        AdStatus::Active => Ok(ad),
        AdStatus::Hidden | AdStatus::Banned if owner => Ok(ad),
        AdStatus::Banned => Err(Problem::new(
            StatusCode::GONE,
            "Gone",
            format!("{SERVICE}: ad {id} was removed by moderation"),
        )),
        _ => Err(not_found()),
    }
}

/// The ad `id` the caller may change at the version `If-Match` names.
async fn editable(
    st: &AppState,
    id: &str,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<(Ad, i64), Problem> {
    let expected = if_match(headers)?;
    let ad = visible(st, id, Some(caller)).await?;
    if ad.owner_id != caller.user_id {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "only the owner edits an ad",
        ));
    }
    if ad.status() == AdStatus::Banned {
        return Err(Problem::conflict("the ad is banned and cannot change"));
    }
    if ad.version != expected {
        return Err(stale(ad.version));
    }
    Ok((ad, expected))
}

pub(crate) fn ad_response(status: StatusCode, ad: Ad) -> Response {
    let public = ad.status() == AdStatus::Active;
    let view = AdView::from(ad);
    let cache = if public {
        "public, max-age=10"
    } else {
        "private, no-cache"
    };
    (
        status,
        [
            (header::ETAG, etag(view.version)),
            (header::CACHE_CONTROL, cache.to_owned()),
        ],
        Json(view),
    )
        .into_response()
}

fn status_of(raw: Option<&str>) -> Result<AdStatus, Problem> {
    match raw {
        None | Some("ACTIVE") => Ok(AdStatus::Active),
        Some("HIDDEN") => Ok(AdStatus::Hidden),
        Some(other) => Err(Problem::unprocessable(format!(
            "status must be ACTIVE or HIDDEN, not {other:?}"
        ))),
    }
}

fn fields(b: AdBody) -> AdFields {
    AdFields {
        title: b.title,
        description: b.description,
        price_minor: b.price.amount_minor,
        currency: b.price.currency,
        category: b.category,
        region: b.region,
        photos: b.photos,
    }
}

#[utoipa::path(
    post,
    path = "/v1/ads",
    tag = "ads",
    request_body = AdBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried POST return the same ad")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new ACTIVE ad", body = AdView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AdBody>,
) -> Result<Response, Problem> {
    if body.status.is_some() {
        return Err(Problem::unprocessable(
            "a new ad is ACTIVE; hide it with PATCH",
        ));
    }
    let key = crate::orders::client_key(&headers)?;
    let key = crate::orders::request_key(&caller.user_id, &format!("ad/{key}"));
    let req = CreateAdRequest {
        owner_id: caller.user_id,
        fields: Some(fields(body)),
    };
    let ad = st
        .ad
        .call(|ch| async move {
            AdServiceClient::with_interceptor(ch, platform::trace::inject)
                .create_ad(grpc::request(req, Some(&key)))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    let location = format!("/v1/ads/{}", ad.ad_id);
    let mut response = ad_response(StatusCode::CREATED, ad);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/ads/{id}",
    tag = "ads",
    params(("id" = String, Path, description = "The ad's id"), ("If-None-Match" = Option<String>, Header, description = "ETags the client holds")),
    responses(
        (status = 200, description = "The ad", body = AdView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 404, description = "No such ad, or not visible to the caller", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 410, description = "The ad was banned by moderation (its owner still sees it)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(st): State<AppState>,
    caller: Option<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    // Anonymous reads of ACTIVE cards go through the cache (see `cache`).
    let cached = if caller.is_none() {
        st.cache.get(&id)
    } else {
        None
    };
    let ad = match cached {
        Some(ad) => ad,
        None => {
            let ad = visible(&st, &id, caller.as_ref()).await?;
            if caller.is_none() && ad.status() == AdStatus::Active {
                st.cache.put(ad.clone());
            }
            ad
        }
    };
    let tag = etag(ad.version);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &tag) || st.mutants.not_modified_unchecked);
    if unchanged {
        let mut response = ad_response(StatusCode::NOT_MODIFIED, ad);
        *response.body_mut() = axum::body::Body::empty();
        response.headers_mut().remove(header::CONTENT_TYPE);
        return Ok(response);
    }
    Ok(ad_response(StatusCode::OK, ad))
}

#[utoipa::path(
    put,
    path = "/v1/ads/{id}",
    tag = "ads",
    request_body = AdBody,
    params(("id" = String, Path, description = "The ad's id"), ("If-Match" = String, Header, description = "The ETag last read (required)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ad, replaced", body = AdView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 403, description = "Not the owner", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such ad", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The ad is banned", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "The ad changed since the ETag in If-Match", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AdBody>,
) -> Result<Response, Problem> {
    let (_, version) = editable(&st, &id, &caller, &headers).await?;
    let status = status_of(body.status.as_deref())?;
    let req = UpdateAdRequest {
        ad_id: id,
        caller_id: caller.user_id,
        expected_version: version,
        fields: Some(fields(body)),
        status: status as i32,
    };
    updated(&st, req).await
}

#[utoipa::path(
    patch,
    path = "/v1/ads/{id}",
    tag = "ads",
    request_body = AdPatch,
    params(("id" = String, Path, description = "The ad's id"), ("If-Match" = String, Header, description = "The ETag last read (required)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ad, changed", body = AdView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 403, description = "Not the owner", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such ad", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The ad is banned", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "The ad changed since the ETag in If-Match", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn patch(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(p): ApiJson<AdPatch>,
) -> Result<Response, Problem> {
    let (ad, version) = editable(&st, &id, &caller, &headers).await?;
    let status = match p.status.as_deref() {
        None => ad.status(),
        some => status_of(some)?,
    };
    let mut f = ad.fields.unwrap_or_default();
    if let Some(v) = p.title {
        f.title = v;
    }
    if let Some(v) = p.description {
        f.description = v;
    }
    if let Some(v) = p.price {
        f.price_minor = v.amount_minor;
        f.currency = v.currency;
    }
    if let Some(v) = p.category {
        f.category = v;
    }
    if let Some(v) = p.region {
        f.region = v;
    }
    if let Some(v) = p.photos {
        f.photos = v;
    }
    let req = UpdateAdRequest {
        ad_id: id,
        caller_id: caller.user_id,
        expected_version: version,
        fields: Some(f),
        status: status as i32,
    };
    updated(&st, req).await
}

#[utoipa::path(
    delete,
    path = "/v1/ads/{id}",
    tag = "ads",
    params(("id" = String, Path, description = "The ad's id"), ("If-Match" = String, Header, description = "The ETag last read (required)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The ad is deleted"),
        (status = 403, description = "Not the owner", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such ad", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The ad is banned", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "The ad changed since the ETag in If-Match", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed If-Match", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let (_, version) = editable(&st, &id, &caller, &headers).await?;
    let req = DeleteAdRequest {
        ad_id: id,
        caller_id: caller.user_id,
        expected_version: version,
    };
    let ad_id = req.ad_id.clone();
    st.ad
        .call(|ch| async move {
            AdServiceClient::with_interceptor(ch, platform::trace::inject)
                .delete_ad(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?;
    st.cache.invalidate(&ad_id, 0);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_lists_weak_tags_and_star() {
        assert!(none_match("\"3\"", "\"3\""));
        assert!(none_match("\"1\", W/\"3\"", "\"3\""));
        assert!(none_match("*", "\"3\""));
        assert!(!none_match("\"4\"", "\"3\""));
        assert!(!none_match("3", "\"3\""));
    }

    #[test]
    fn if_match_is_required_and_must_be_a_tag_we_gave() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).map_err(|p| p.status), Err(428));
        h.insert(header::IF_MATCH, header::HeaderValue::from_static("\"7\""));
        assert_eq!(if_match(&h).map_err(|p| p.status), Ok(7));
        h.insert(
            header::IF_MATCH,
            header::HeaderValue::from_static("W/\"7\""),
        );
        assert_eq!(if_match(&h).map_err(|p| p.status), Err(400));
    }
}
