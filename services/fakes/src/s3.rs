//! A model of an S3-compatible object store, for the simulation: path-style
//! `PUT`/`GET`/`HEAD`/`DELETE /<bucket>/<key>` authorized by presigned URLs (AWS Signature
//! Version 4 in the query string), the only way the marketplace talks to object storage.
//!
//! What it promises is what `conformance::objects` checks against a real S3-compatible server
//! (s3s-fs) too: a request whose signature does not match its method, path, signed headers
//! (`content-type` and `content-length` of an upload) or secret is refused 403, so is one past
//! its expiry; `HEAD` of a missing object is 404; an upload replaces the object. Other S3
//! features (multipart, listing, versioning, header authorization) are absent.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use bytes::Bytes;
use platform::Shutdown;
use serde::{Deserialize, Serialize};

/// Behaviour of the fake object store.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The one access key it accepts.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
    /// The region signatures must name.
    pub region: String,
    /// Buckets that exist.
    pub buckets: Vec<String>,
    /// Largest object accepted.
    pub object_bytes_max: usize,
    /// Delay of every answer.
    pub latency_ms: u64,
    /// Requests answered 503 SlowDown, per mille (nothing stored).
    pub fail_per_mille: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            access_key: "marketplace-dev".into(),
            secret_key: "marketplace-dev-secret".into(),
            region: "us-east-1".into(),
            buckets: vec!["marketplace-media".into()],
            object_bytes_max: 16 << 20,
            latency_ms: 5,
            fail_per_mille: 0,
        }
    }
}

/// A stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Bytes,
    pub content_type: String,
}

/// Every object, by `<bucket>/<key>` (the key as it appears in the URL path).
pub type SharedObjects = Arc<Mutex<BTreeMap<String, StoredObject>>>;

#[derive(Clone)]
struct Fake {
    config: Arc<S3Config>,
    objects: SharedObjects,
}

/// The fake's HTTP routes.
pub fn router(config: S3Config, objects: SharedObjects) -> Router {
    Router::new().fallback(handle).with_state(Fake {
        config: Arc::new(config),
        objects,
    })
}

/// Serves the fake object store on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: S3Config,
    objects: SharedObjects,
    shutdown: Shutdown,
) {
    platform::http::serve(listener, router(config, objects), shutdown).await;
}

/// An S3 error answer.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn denied(message: &str) -> Response {
    error(StatusCode::FORBIDDEN, "AccessDenied", message)
}

async fn handle(State(fake): State<Fake>, request: Request) -> Response {
    if fake.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fake.config.latency_ms)).await;
    }
    if crate::per_mille() < fake.config.fail_per_mille {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        );
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some((bucket, key)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "expected /<bucket>/<key>",
        );
    };
    if let Err(refusal) = verify(&fake.config, &parts.method, &parts.uri, &parts.headers) {
        return refusal;
    }
    if !fake.config.buckets.iter().any(|b| b == bucket) {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        );
    }
    let name = format!("{bucket}/{key}");
    match parts.method {
        Method::PUT => {
            let Some(declared) = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            else {
                return error(
                    StatusCode::LENGTH_REQUIRED,
                    "MissingContentLength",
                    "You must provide the Content-Length HTTP header.",
                );
            };
            if declared > fake.config.object_bytes_max {
                return error(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed size",
                );
            }
            let Ok(bytes) = axum::body::to_bytes(body, fake.config.object_bytes_max).await else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "The body did not arrive whole",
                );
            };
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("binary/octet-stream")
                .to_owned();
            let tag = etag(&bytes);
            lock(&fake.objects).insert(
                name,
                StoredObject {
                    bytes,
                    content_type,
                },
            );
            (StatusCode::OK, [(header::ETAG, tag)]).into_response()
        }
        Method::GET | Method::HEAD => {
            let Some(object) = lock(&fake.objects).get(&name).cloned() else {
                return if parts.method == Method::HEAD {
                    StatusCode::NOT_FOUND.into_response()
                } else {
                    error(
                        StatusCode::NOT_FOUND,
                        "NoSuchKey",
                        "The specified key does not exist.",
                    )
                };
            };
            let headers = [
                (header::CONTENT_TYPE, object.content_type.clone()),
                (header::CONTENT_LENGTH, object.bytes.len().to_string()),
                (header::ETAG, etag(&object.bytes)),
            ];
            if parts.method == Method::HEAD {
                (StatusCode::OK, headers).into_response()
            } else {
                (StatusCode::OK, headers, Body::from(object.bytes)).into_response()
            }
        }
        Method::DELETE => {
            lock(&fake.objects).remove(&name);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        ),
    }
}

fn lock(objects: &SharedObjects) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredObject>> {
    objects.lock().unwrap_or_else(|e| e.into_inner())
}

/// An entity tag of `bytes` (quoted hex of a SHA-256 prefix; real S3 uses MD5, and clients
/// must treat tags as opaque).
fn etag(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Checks the presigned query authorization of a request: the parameters are all there, the
/// credential is ours, the URL has not expired, and signing the request again (method, host,
/// path, the other query parameters, the signed headers' values as received) gives the same
/// signature.
#[allow(clippy::result_large_err)]
fn verify(
    config: &S3Config,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let mut amz: BTreeMap<String, String> = BTreeMap::new();
    let mut others: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k.starts_with("X-Amz-") {
            amz.insert(k.into_owned(), v.into_owned());
        } else {
            others.push((k.into_owned(), v.into_owned()));
        }
    }
    let param = |name: &str| {
        amz.get(name)
            .map(String::as_str)
            .ok_or_else(|| denied(&format!("query-string authentication requires {name}")))
    };
    if param("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err(denied("only AWS4-HMAC-SHA256 is supported"));
    }
    let credential: Vec<&str> = param("X-Amz-Credential")?.split('/').collect();
    let [key, day, region, "s3", "aws4_request"] = credential[..] else {
        return Err(denied("malformed X-Amz-Credential"));
    };
    if key != config.access_key {
        return Err(error(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS access key Id you provided does not exist in our records.",
        ));
    }
    if region != config.region {
        return Err(denied("the credential names another region"));
    }
    let date = param("X-Amz-Date")?;
    let signed_at = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", date)
        .and_then(|t| t.to_datetime())
        .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt))
        .map_err(|_| denied("malformed X-Amz-Date"))?;
    if !date.starts_with(day) {
        return Err(denied("the credential's date is not the request's"));
    }
    let expires: i64 = param("X-Amz-Expires")?
        .parse()
        .ok()
        .filter(|s| (1..=604_800).contains(s))
        .ok_or_else(|| denied("X-Amz-Expires must be 1..=604800 seconds"))?;
    let now_s = i64::try_from(platform::store::now_ms() / 1000).unwrap_or(i64::MAX);
    if now_s > signed_at.as_second() + expires {
        return Err(denied("Request has expired"));
    }
    let signed_names: Vec<&str> = param("X-Amz-SignedHeaders")?.split(';').collect();
    let mut signed: Vec<(String, String)> = Vec::new();
    for name in &signed_names {
        let Some(value) = headers.get(*name).and_then(|v| v.to_str().ok()) else {
            return Err(denied(&format!("signed header {name} is missing")));
        };
        signed.push(((*name).to_owned(), value.trim().to_owned()));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| denied("no Host header"))?;
    let url = url::Url::parse(&format!("http://{host}{}", uri.path()))
        .map_err(|_| denied("the Host header and path do not make a URL"))?;
    let method = match *method {
        Method::GET => rusty_s3::Method::Get,
        Method::HEAD => rusty_s3::Method::Head,
        Method::PUT => rusty_s3::Method::Put,
        Method::DELETE => rusty_s3::Method::Delete,
        _ => return Err(denied("method not supported")),
    };
    others.sort();
    let resigned = rusty_s3::signing::sign(
        &signed_at,
        method,
        url,
        key,
        &config.secret_key,
        None,
        region,
        u64::try_from(expires).unwrap_or(0),
        others.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        signed.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let expected = resigned
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned());
    let given = param("X-Amz-Signature")?;
    if expected.as_deref() != Some(given) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}
