//! Photos on the real stack: an upload slot from the gateway, the bytes straight to the real
//! S3-compatible server (s3s-fs, which checks the signature), completion, the photo on the
//! ad and behind its redirect; and every way to get it wrong.

use gateway::{AdView, UploadView};
use platform::http::{HttpClient, HttpResponse};

use crate::support::{self, bearer};

struct Owner {
    gateway: String,
    auth: String,
    ad: AdView,
}

impl Owner {
    async fn new(stack: &support::Stack, email: &str) -> Owner {
        let session = support::register_and_login(&stack.gateway, email).await;
        let auth = bearer(&session);
        let body = serde_json::json!({
            "title": "Armchair", "price": {"amount_minor": 5_000, "currency": "RUB"},
            "category": "home", "region": "msk",
        });
        let ad = stack
            .client()
            .post_json(
                &format!("{}/v1/ads", stack.gateway),
                &[("authorization", &auth)],
                &body,
            )
            .await
            .expect("an ad");
        Owner {
            gateway: stack.gateway.clone(),
            auth,
            ad,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> HttpResponse {
        HttpClient::new(std::time::Duration::from_secs(10))
            .send(
                method,
                &format!("{}{path}", self.gateway),
                &[("authorization", &self.auth)],
                body.as_ref(),
            )
            .await
            .expect("the gateway answers")
    }

    async fn slot(&self, content_type: &str, size: usize) -> UploadView {
        let r = self
            .send(
                "POST",
                &format!("/v1/ads/{}/photos", self.ad.ad_id),
                Some(serde_json::json!({"content_type": content_type, "size_bytes": size})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json().expect("an upload slot")
    }
}

/// `PUT`s `bytes` as `content_type` to the slot's URL; the storage's status.
async fn upload(slot: &UploadView, content_type: &str, bytes: &[u8]) -> u16 {
    HttpClient::new(std::time::Duration::from_secs(10))
        .send_bytes(
            &slot.upload_method,
            &slot.upload_url,
            &[("content-type", content_type)],
            Some((bytes.to_vec(), content_type)),
        )
        .await
        .expect("storage answers")
        .status
}

fn problem(r: &HttpResponse, status: u16) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn a_photo_is_uploaded_to_storage_checked_attached_and_served() {
    let stack = support::start(|_| {}).await;
    let owner = Owner::new(&stack, "photographer@stack.test").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let slot = owner.slot("image/jpeg", bytes.len()).await;
    assert!(
        slot.upload_url
            .starts_with(&std::env::var("S3_ENDPOINT").expect("S3_ENDPOINT")),
        "the client uploads straight to storage: {}",
        slot.upload_url
    );
    assert_eq!(slot.upload_headers["content-type"], "image/jpeg");
    assert_eq!(upload(&slot, "image/jpeg", &bytes).await, 200);

    let r = owner.send("POST", &slot.complete_url, None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ad: AdView = r.json().expect("the ad");
    assert_eq!(ad.photos, vec![slot.photo_id.clone()]);
    assert_eq!(r.header("etag"), Some(gateway::etag(ad.version).as_str()));
    assert!(ad.version > owner.ad.version);
    // Completing again (a retry after a lost answer) changes nothing.
    let again: AdView = owner
        .send("POST", &slot.complete_url, None)
        .await
        .json()
        .expect("the ad");
    assert_eq!((again.version, again.photos), (ad.version, ad.photos));

    // Anyone follows the photo's link to a short-lived download URL.
    let client = HttpClient::new(std::time::Duration::from_secs(10));
    let r = client
        .send(
            "GET",
            &format!("{}/v1/photos/{}", stack.gateway, slot.photo_id),
            &[],
            None,
        )
        .await
        .expect("redirect");
    assert_eq!(r.status, 302);
    let location = r.header("location").expect("Location").to_owned();
    let r = client
        .send_bytes("GET", &location, &[], None)
        .await
        .expect("download");
    assert_eq!((r.status, r.body.len()), (200, bytes.len()));
    assert_eq!(&r.body[..], &bytes[..]);
}

#[tokio::test]
async fn wrong_photos_are_refused_and_never_attached() {
    let stack = support::start(|_| {}).await;
    let owner = Owner::new(&stack, "owner@stack.test").await;
    let stranger = Owner::new(&stack, "stranger@stack.test").await;
    let photos = format!("/v1/ads/{}/photos", owner.ad.ad_id);

    // Types and sizes the service does not take.
    for body in [
        serde_json::json!({"content_type": "image/gif", "size_bytes": 10}),
        serde_json::json!({"content_type": "image/png", "size_bytes": 0}),
        serde_json::json!({"content_type": "image/png", "size_bytes": 20_000_000}),
    ] {
        problem(&owner.send("POST", &photos, Some(body)).await, 422);
    }
    problem(
        &owner
            .send(
                "POST",
                &photos,
                Some(serde_json::json!({"content_type": "image/png"})),
            )
            .await,
        422,
    );
    // Only the owner adds photos.
    let body = serde_json::json!({"content_type": "image/png", "size_bytes": 10});
    problem(
        &stranger.send("POST", &photos, Some(body.clone())).await,
        403,
    );
    problem(
        &owner
            .send("POST", "/v1/ads/no-such-ad/photos", Some(body))
            .await,
        404,
    );

    // Completing before uploading: 409, nothing attached.
    let slot = owner.slot("image/png", 10).await;
    problem(&owner.send("POST", &slot.complete_url, None).await, 409);
    // Storage refuses an upload of another length or type than the slot's.
    assert_eq!(upload(&slot, "image/png", &[1; 11]).await, 403);
    assert_eq!(upload(&slot, "image/jpeg", &[1; 10]).await, 403);
    problem(&owner.send("POST", &slot.complete_url, None).await, 409);
    assert_eq!(upload(&slot, "image/png", &[1; 10]).await, 200);
    // Someone else's photo, or the photo under another ad: refused.
    problem(&stranger.send("POST", &slot.complete_url, None).await, 403);
    let elsewhere = format!(
        "/v1/ads/{}/photos/{}/complete",
        stranger.ad.ad_id, slot.photo_id
    );
    problem(&owner.send("POST", &elsewhere, None).await, 404);
    let ad: AdView = owner
        .send("GET", &format!("/v1/ads/{}", owner.ad.ad_id), None)
        .await
        .json()
        .expect("the ad");
    assert!(ad.photos.is_empty(), "{:?}", ad.photos);
    // No photos through the ad's own fields: a new ad has none, an edit only drops or
    // reorders them.
    let body = serde_json::json!({
        "title": "Sofa", "price": {"amount_minor": 5_000, "currency": "RUB"},
        "category": "home", "region": "msk", "photos": [slot.photo_id],
    });
    problem(&owner.send("POST", "/v1/ads", Some(body)).await, 422);
    // Unknown photos are 404 behind the public link.
    problem(
        &owner.send("GET", "/v1/photos/no-such-photo", None).await,
        404,
    );
    problem(
        &owner
            .send("GET", &format!("/v1/photos/{}", stranger.ad.ad_id), None)
            .await,
        404,
    );
}
