//! Photos of ads: the client asks for an upload slot, uploads the bytes straight to object
//! storage with the presigned URL it got, then says it is done; the media service checks what
//! arrived and the ad service attaches the photo. The gateway never carries the bytes.
//!
//! - `POST /v1/ads/{id}/photos` `{content_type, size_bytes}` → 201 with the upload URL, the
//!   method and the headers to send (owner only; 409 when the ad has its 10 photos).
//! - `PUT <upload_url>` with exactly those headers and `size_bytes` bytes (to storage).
//! - `POST /v1/ads/{id}/photos/{photo_id}/complete` → 200 with the ad, the photo attached;
//!   409 while nothing was uploaded or when what was uploaded differs from what was declared.
//! - `GET /v1/photos/{id}` → 302 to a short-lived download URL.

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use contracts::{
    ad::{AdStatus, AttachPhotoRequest},
    media::{media_service_client::MediaServiceClient, CreateUploadRequest, PhotoRef},
};
use platform::{
    grpc,
    http::{ApiJson, Problem},
};
use serde::{Deserialize, Serialize};

use crate::{auth::Caller, errors::problem, AppState};

const SERVICE: &str = "media";
const PHOTOS_MAX: usize = 10;

/// The body of `POST /v1/ads/{id}/photos`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadBody {
    /// `image/jpeg`, `image/png` or `image/webp`.
    #[schema(pattern = "^image/(jpeg|png|webp)$")]
    pub content_type: String,
    /// The exact size of the file, at most 10 MiB.
    #[schema(minimum = 1, maximum = 10_485_760)]
    pub size_bytes: i64,
}

/// An upload slot: send `upload_method` to `upload_url` with `upload_headers` and the
/// file's bytes, before `expires_ms`; then complete it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UploadView {
    pub photo_id: String,
    pub upload_url: String,
    /// `PUT`.
    pub upload_method: String,
    /// Headers the upload must carry as they are (they are signed).
    pub upload_headers: std::collections::BTreeMap<String, String>,
    pub expires_ms: i64,
    /// Where to `POST` once the upload is done.
    pub complete_url: String,
}

fn media_failed() -> impl Fn(tonic::Status) -> Problem {
    move |e| problem(SERVICE, e)
}

/// The ad `id` if `caller` owns it and it can take another photo.
async fn own_ad(st: &AppState, id: &str, caller: &Caller) -> Result<(), Problem> {
    let ad = crate::ads::visible(st, id, Some(caller)).await?;
    if ad.owner_id != caller.user_id {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "only the owner adds photos to an ad",
        ));
    }
    if ad.status() == AdStatus::Banned {
        return Err(Problem::conflict("the ad is banned and cannot change"));
    }
    if ad.fields.as_ref().map_or(0, |f| f.photos.len()) >= PHOTOS_MAX {
        return Err(Problem::conflict(format!(
            "the ad has its {PHOTOS_MAX} photos; remove one first"
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/ads/{id}/photos",
    tag = "ads",
    request_body = UploadBody,
    params(("id" = String, Path, description = "The ad's id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "An upload slot", body = UploadView),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such ad", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The ad is banned or has its 10 photos", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A type or size not taken", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many uploads lately (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_upload(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UploadBody>,
) -> Result<Response, Problem> {
    own_ad(&st, &id, &caller).await?;
    let req = CreateUploadRequest {
        owner_id: caller.user_id,
        ad_id: id.clone(),
        content_type: body.content_type,
        size_bytes: body.size_bytes,
    };
    let photo = st
        .media
        .call(|ch| async move {
            MediaServiceClient::with_interceptor(ch, platform::trace::inject)
                .create_upload(grpc::request(req, None))
                .await
        })
        .await
        .map_err(media_failed())?
        .into_inner();
    let view = UploadView {
        complete_url: format!("/v1/ads/{id}/photos/{}/complete", photo.photo_id),
        upload_headers: [("content-type".to_owned(), photo.content_type.clone())].into(),
        upload_method: "PUT".into(),
        upload_url: photo.upload_url,
        expires_ms: photo.url_expires_ms,
        photo_id: photo.photo_id,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/ads/{id}/photos/{photo_id}/complete",
    tag = "ads",
    params(("id" = String, Path, description = "The ad's id"), ("photo_id" = String, Path, description = "The upload slot's photo id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ad with the photo attached", body = crate::ads::AdView, headers(("ETag" = String, description = "The version, e.g. \"3\""), ("Cache-Control" = String))),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the uploader", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such ad or photo", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Nothing uploaded yet, the upload differs from what was declared, or the ad cannot take it", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn complete(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, photo_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let not_found = || Problem::not_found(format!("no photo {photo_id} of ad {id}"));
    if grpc::require_id(SERVICE, "photo_id", &photo_id).is_err() {
        return Err(not_found());
    }
    let req = PhotoRef {
        photo_id: photo_id.clone(),
        caller_id: caller.user_id.clone(),
    };
    let photo = st
        .media
        .call(|ch| async move {
            MediaServiceClient::with_interceptor(ch, platform::trace::inject)
                .complete_upload(grpc::request(req, None))
                .await
        })
        .await
        .map_err(media_failed())?
        .into_inner();
    if photo.ad_id != id {
        return Err(not_found());
    }
    let req = AttachPhotoRequest {
        ad_id: id,
        caller_id: caller.user_id,
        photo_id,
    };
    let ad = st
        .ad
        .call(|ch| async move {
            contracts::ad::ad_service_client::AdServiceClient::with_interceptor(
                ch,
                platform::trace::inject,
            )
            .attach_photo(grpc::request(req, None))
            .await
        })
        .await
        .map_err(|e| problem("ad", e))?
        .into_inner();
    st.cache.invalidate(&ad.ad_id, 0);
    Ok(crate::ads::ad_response(StatusCode::OK, ad))
}

#[utoipa::path(
    get,
    path = "/v1/photos/{id}",
    tag = "ads",
    params(("id" = String, Path, description = "The photo's id")),
    responses(
        (status = 302, description = "Redirect to a short-lived download URL (Location)"),
        (status = 404, description = "No such photo", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(st): State<AppState>,
    Path(photo_id): Path<String>,
) -> Result<Response, Problem> {
    if grpc::require_id(SERVICE, "photo_id", &photo_id).is_err() {
        return Err(Problem::not_found(format!("no photo {photo_id}")));
    }
    let req = PhotoRef {
        photo_id,
        caller_id: String::new(),
    };
    let photo = st
        .media
        .call(|ch| async move {
            MediaServiceClient::with_interceptor(ch, platform::trace::inject)
                .get_photo(grpc::request(req, None))
                .await
        })
        .await
        .map_err(media_failed())?
        .into_inner();
    let location =
        header::HeaderValue::from_str(&photo.download_url).map_err(|_| Problem::internal())?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("private, max-age=60"),
            ),
        ],
    )
        .into_response())
}
