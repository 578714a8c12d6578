//! The object store port (`media::objects`): S3's API through presigned URLs. Run against a
//! real S3-compatible server (s3s-fs, which checks signatures) and against `fakes::s3`, the
//! simulation's model, so the model refuses what a real server refuses.
//!
//! Every check takes the store's settings and a fresh key prefix (the suites share a bucket).

use std::time::Duration;

use media::{ObjectMeta, ObjectStore, ObjectStoreConfig};
use platform::http::HttpClient;

fn store(config: &ObjectStoreConfig) -> ObjectStore {
    ObjectStore::new(config, Duration::from_secs(5)).expect("object store settings")
}

fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// `PUT`s `bytes` to `url` as `content_type`; the status.
async fn upload(url: &str, content_type: &str, bytes: &[u8]) -> u16 {
    HttpClient::new(Duration::from_secs(5))
        .send_bytes(
            "PUT",
            url,
            &[("content-type", content_type)],
            Some((bytes.to_vec(), content_type)),
        )
        .await
        .expect("the store answers")
        .status
}

const TTL: Duration = Duration::from_secs(300);

/// An upload through a presigned URL is what `HEAD` and a presigned `GET` show.
pub async fn a_presigned_upload_is_read_back(config: &ObjectStoreConfig, prefix: &str) {
    let s = store(config);
    let key = format!("{prefix}/photo.png");
    let bytes = b"\x89PNG not really".to_vec();
    let url = s.presign_put(&key, "image/png", bytes.len() as i64, now_ms(), TTL);
    assert_eq!(upload(&url, "image/png", &bytes).await, 200, "upload");
    let meta = s.head(&key, now_ms()).await.expect("head");
    assert_eq!(
        meta,
        Some(ObjectMeta {
            size_bytes: bytes.len() as i64,
            content_type: "image/png".into()
        })
    );
    let get = s.presign_get(&key, now_ms(), TTL);
    let r = HttpClient::new(Duration::from_secs(5))
        .send_bytes("GET", &get, &[], None)
        .await
        .expect("get");
    assert_eq!((r.status, r.body.to_vec()), (200, bytes));
}

/// The length and type of an upload are signed: other ones are refused and store nothing.
pub async fn an_upload_of_another_length_or_type_is_refused(
    config: &ObjectStoreConfig,
    prefix: &str,
) {
    let s = store(config);
    let key = format!("{prefix}/signed.png");
    let url = s.presign_put(&key, "image/png", 10, now_ms(), TTL);
    assert_eq!(upload(&url, "image/png", &[7; 11]).await, 403, "longer");
    assert_eq!(upload(&url, "image/png", &[7; 9]).await, 403, "shorter");
    assert_eq!(upload(&url, "image/jpeg", &[7; 10]).await, 403, "type");
    assert_eq!(s.head(&key, now_ms()).await.expect("head"), None);
    assert_eq!(upload(&url, "image/png", &[7; 10]).await, 200, "as signed");
}

/// A URL used for another key, signed with another secret, or past its expiry is refused.
pub async fn a_foreign_or_expired_signature_is_refused(config: &ObjectStoreConfig, prefix: &str) {
    let s = store(config);
    let key = format!("{prefix}/a.png");
    let url = s.presign_put(&key, "image/png", 3, now_ms(), TTL);
    let moved = url.replace("/a.png?", "/b.png?");
    assert_ne!(moved, url);
    assert_eq!(
        upload(&moved, "image/png", b"abc").await,
        403,
        "another key"
    );
    let forged = store(&ObjectStoreConfig {
        secret_key: format!("{}-not", config.secret_key),
        ..config.clone()
    });
    let url = forged.presign_put(&key, "image/png", 3, now_ms(), TTL);
    assert_eq!(
        upload(&url, "image/png", b"abc").await,
        403,
        "another secret"
    );
    assert!(
        forged.head(&key, now_ms()).await.is_err(),
        "HEAD with another secret"
    );
    let hour_ago = now_ms() - 3_600_000;
    let url = s.presign_put(&key, "image/png", 3, hour_ago, Duration::from_secs(60));
    assert_eq!(upload(&url, "image/png", b"abc").await, 403, "expired");
    assert_eq!(s.head(&key, now_ms()).await.expect("head"), None);
}

/// `HEAD` of a missing object is none; `DELETE` removes an object and is done when there is
/// none.
pub async fn delete_removes_and_is_idempotent(config: &ObjectStoreConfig, prefix: &str) {
    let s = store(config);
    let key = format!("{prefix}/gone.webp");
    assert_eq!(s.head(&key, now_ms()).await.expect("head"), None);
    let url = s.presign_put(&key, "image/webp", 4, now_ms(), TTL);
    assert_eq!(upload(&url, "image/webp", b"RIFF").await, 200);
    assert!(s.head(&key, now_ms()).await.expect("head").is_some());
    s.delete(&key, now_ms()).await.expect("delete");
    assert_eq!(s.head(&key, now_ms()).await.expect("head"), None);
    s.delete(&key, now_ms()).await.expect("delete again");
}

/// Every check, in order.
pub async fn all(config: &ObjectStoreConfig, prefix: &str) {
    a_presigned_upload_is_read_back(config, prefix).await;
    an_upload_of_another_length_or_type_is_refused(config, prefix).await;
    a_foreign_or_expired_signature_is_refused(config, prefix).await;
    delete_removes_and_is_idempotent(config, prefix).await;
}
