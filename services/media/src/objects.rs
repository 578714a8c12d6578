//! The media service's port to object storage: S3's REST API, path-style, every request
//! authorized by a presigned URL (AWS Signature Version 4 in the query string). Signing needs
//! no I/O, so the same client runs in production (against any S3-compatible server) and in
//! the simulation (against `fakes::s3`); `conformance::objects` holds both servers to one
//! behaviour.

use std::time::Duration;

use platform::http::{HttpClient, HttpError};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};

/// Where the objects live and how to sign for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStoreConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:9000` (clients upload to it directly).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// What `HEAD` tells of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size_bytes: i64,
    pub content_type: String,
}

/// An S3 client that presigns every request.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    bucket: Bucket,
    credentials: Credentials,
    http: HttpClient,
    /// The store's circuit breaker, shared by every call.
    breaker: std::sync::Arc<platform::breaker::Breaker>,
}

/// The wall clock as a signing time (the simulation's clock under madsim).
fn timestamp(now_ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl ObjectStore {
    /// A client of `config`'s bucket; each call is bounded by `timeout`.
    pub fn new(config: &ObjectStoreConfig, timeout: Duration) -> anyhow::Result<Self> {
        let endpoint: url::Url = config
            .endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("object store endpoint {:?}: {e}", config.endpoint))?;
        anyhow::ensure!(
            matches!(endpoint.scheme(), "http" | "https"),
            "object store endpoint {:?} is not http(s)",
            config.endpoint
        );
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| anyhow::anyhow!("bucket {:?}: {e}", config.bucket))?;
        let breaker = platform::breaker::Breaker::shared("object store");
        Ok(ObjectStore {
            bucket,
            credentials: Credentials::new(config.access_key.clone(), config.secret_key.clone()),
            http: HttpClient::new(timeout).with_breaker(breaker.clone()),
            breaker,
        })
    }

    /// The same client, its calls and its breaker's state exposed in `registry`
    /// (dependency `object store`).
    pub fn observed(self, registry: &std::sync::Arc<platform::metrics::Registry>) -> Self {
        registry.watch_breaker(self.breaker.clone());
        ObjectStore {
            http: self.http.observed(registry.clone(), "object store"),
            ..self
        }
    }

    /// A URL to `PUT` exactly `size_bytes` bytes of `content_type` at `key` until
    /// `now_ms + ttl`: both headers are signed, so another type or length is refused.
    pub fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size_bytes: i64,
        now_ms: i64,
        ttl: Duration,
    ) -> String {
        let length = size_bytes.to_string();
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("content-length", length.as_str());
        action.headers_mut().insert("content-type", content_type);
        action.sign_with_time(ttl, &timestamp(now_ms)).to_string()
    }

    /// A URL to `GET` `key` until `now_ms + ttl`.
    pub fn presign_get(&self, key: &str, now_ms: i64, ttl: Duration) -> String {
        self.bucket
            .get_object(Some(&self.credentials), key)
            .sign_with_time(ttl, &timestamp(now_ms))
            .to_string()
    }

    /// The object at `key`, if there is one.
    pub async fn head(&self, key: &str, now_ms: i64) -> Result<Option<ObjectMeta>, HttpError> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign_with_time(Duration::from_secs(60), &timestamp(now_ms));
        let answer = self
            .http
            .send_bytes("HEAD", url.as_str(), &[], None)
            .await?;
        match answer.status {
            200 => {
                let size_bytes = answer
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| HttpError::Decode("HEAD without a Content-Length".into()))?;
                let content_type = answer.header("content-type").unwrap_or("").to_owned();
                Ok(Some(ObjectMeta {
                    size_bytes,
                    content_type,
                }))
            }
            404 => Ok(None),
            status => Err(HttpError::Status {
                status,
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            }),
        }
    }

    /// Deletes the object at `key` (done when there is none).
    pub async fn delete(&self, key: &str, now_ms: i64) -> Result<(), HttpError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign_with_time(Duration::from_secs(60), &timestamp(now_ms));
        let answer = self
            .http
            .send_bytes("DELETE", url.as_str(), &[], None)
            .await?;
        match answer.status {
            200..=299 | 404 => Ok(()),
            status => Err(HttpError::Status {
                status,
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            }),
        }
    }
}
