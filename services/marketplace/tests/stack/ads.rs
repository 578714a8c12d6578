//! Ads through the gateway on the real stack: CRUD, ETags and conditional requests, who may
//! see and change what, bad input, and every change on `ad.changed` in order.

use std::{sync::Arc, time::Duration};

use adapters::{KafkaConfig, KafkaEventLog};
use gateway::AdView;
use platform::ports::{ConsumerConfig, EventLog};
use serde_json::json;

use crate::{
    bad_input::{assert_problem, raw},
    support::{self, bearer},
};

fn bike() -> serde_json::Value {
    json!({
        "title": "Road bike",
        "description": "Aluminium frame, 56 cm",
        "price": {"amount_minor": 2_500_000, "currency": "RUB"},
        "category": "bikes",
        "region": "msk",
    })
}

fn tag(answer: &(u16, hyper::HeaderMap, String)) -> String {
    answer
        .1
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_are_created_read_with_etags_edited_by_their_owner_and_deleted() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let owner = bearer(&stack.session);
    let other = bearer(&support::register_and_login(&stack.gateway, "rival@stack.test").await);
    let json_as = |auth: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("authorization", auth.to_owned()),
        ]
    };
    let h = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let call = |method: &'static str,
                path: String,
                headers: Vec<(&'static str, String)>,
                body: String| async move {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        raw(gw, method, &path, &hs, &body).await
    };

    // Create, twice with one Idempotency-Key: one ad.
    let mut create = json_as(&owner);
    create.push(("idempotency-key", "bike-1".to_owned()));
    let created = call("POST", "/v1/ads".into(), h(&create), bike().to_string()).await;
    assert_eq!(created.0, 201, "{}", created.2);
    let ad: AdView = serde_json::from_str(&created.2).expect("ad");
    assert_eq!((ad.version, ad.status.as_str()), (1, "ACTIVE"));
    assert_eq!(tag(&created), "\"1\"");
    let again = call("POST", "/v1/ads".into(), h(&create), bike().to_string()).await;
    let same: AdView = serde_json::from_str(&again.2).expect("ad");
    assert_eq!(same.ad_id, ad.ad_id, "a retried create returns the same ad");
    let path = format!("/v1/ads/{}", ad.ad_id);

    // Public read, conditional read.
    let read = call("GET", path.clone(), vec![], String::new()).await;
    assert_eq!(read.0, 200);
    assert_eq!(
        read.1.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("public, max-age=10")
    );
    let not_modified = call(
        "GET",
        path.clone(),
        vec![("if-none-match", "\"1\"".into())],
        String::new(),
    )
    .await;
    assert_eq!((not_modified.0, not_modified.2.as_str()), (304, ""));
    assert_eq!(tag(&not_modified), "\"1\"");

    // Edits need If-Match, and the owner.
    let patch = json!({"price": {"amount_minor": 2_200_000, "currency": "RUB"}}).to_string();
    assert_problem(
        &call("PATCH", path.clone(), h(&json_as(&owner)), patch.clone()).await,
        428,
        "no If-Match",
    );
    let mut stale = json_as(&owner);
    stale.push(("if-match", "\"7\"".into()));
    assert_problem(
        &call("PATCH", path.clone(), h(&stale), patch.clone()).await,
        412,
        "stale If-Match",
    );
    let mut theirs = json_as(&other);
    theirs.push(("if-match", "\"1\"".into()));
    assert_problem(
        &call("PATCH", path.clone(), h(&theirs), patch.clone()).await,
        403,
        "not the owner",
    );
    let mut fresh = json_as(&owner);
    fresh.push(("if-match", "\"1\"".into()));
    let patched = call("PATCH", path.clone(), h(&fresh), patch.clone()).await;
    assert_eq!(patched.0, 200, "{}", patched.2);
    let patched_ad: AdView = serde_json::from_str(&patched.2).expect("ad");
    assert_eq!(
        (
            patched_ad.version,
            patched_ad.price.amount_minor,
            patched_ad.title.as_str()
        ),
        (2, 2_200_000, "Road bike")
    );
    // The old tag no longer matches: a 200 with the new version.
    let changed = call(
        "GET",
        path.clone(),
        vec![("if-none-match", "\"1\"".into())],
        String::new(),
    )
    .await;
    assert_eq!((changed.0, tag(&changed)), (200, "\"2\"".to_owned()));
    // A second write with the first tag loses.
    assert_problem(
        &call("PATCH", path.clone(), h(&fresh), patch.clone()).await,
        412,
        "lost update",
    );

    // PUT replaces; hiding makes the ad its owner's alone.
    let mut put = json_as(&owner);
    put.push(("if-match", "\"2\"".into()));
    let mut body = bike();
    body["title"] = json!("Road bike, hidden for now");
    body["status"] = json!("HIDDEN");
    let hidden = call("PUT", path.clone(), h(&put), body.to_string()).await;
    assert_eq!(hidden.0, 200, "{}", hidden.2);
    assert_problem(
        &call("GET", path.clone(), vec![], String::new()).await,
        404,
        "hidden, anonymous",
    );
    assert_problem(
        &call(
            "GET",
            path.clone(),
            vec![("authorization", other.clone())],
            String::new(),
        )
        .await,
        404,
        "hidden, another user",
    );
    let mine = call(
        "GET",
        path.clone(),
        vec![("authorization", owner.clone())],
        String::new(),
    )
    .await;
    assert_eq!(mine.0, 200);
    assert_eq!(
        mine.1.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("private, no-cache")
    );

    // Delete.
    assert_problem(
        &call(
            "DELETE",
            path.clone(),
            vec![("authorization", owner.clone())],
            String::new(),
        )
        .await,
        428,
        "delete without If-Match",
    );
    let deleted = call(
        "DELETE",
        path.clone(),
        vec![
            ("authorization", owner.clone()),
            ("if-match", "\"3\"".into()),
        ],
        String::new(),
    )
    .await;
    assert_eq!(deleted.0, 204, "{}", deleted.2);
    assert_problem(
        &call(
            "GET",
            path.clone(),
            vec![("authorization", owner.clone())],
            String::new(),
        )
        .await,
        404,
        "deleted",
    );

    // Every version is on ad.changed, in order, under the ad's key.
    let log: Arc<dyn EventLog> = Arc::new(
        KafkaEventLog::connect(KafkaConfig::new(stack.settings.kafka_bootstrap.clone()))
            .await
            .expect("kafka"),
    );
    #[allow(clippy::disallowed_methods)]
    let group = format!("stack-ads-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = log
        .consumer(ConsumerConfig::new(group), &[ad::AD_CHANGED_TOPIC])
        .await
        .expect("consumer");
    let mut versions = Vec::new();
    let started = tokio::time::Instant::now();
    while versions.len() < 4 && started.elapsed() < Duration::from_secs(60) {
        for r in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            if r.key == ad.ad_id {
                let e: ad::AdChanged = serde_json::from_slice(&r.payload).expect("event");
                versions.push((e.version, e.ad.status, e.ad.price_minor));
            }
        }
    }
    assert_eq!(
        versions,
        vec![
            (1, "ACTIVE".into(), 2_500_000),
            (2, "ACTIVE".into(), 2_200_000),
            (3, "HIDDEN".into(), 2_500_000),
            (4, "DELETED".into(), 2_500_000),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ads_are_refused_with_problem_json() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let auth = bearer(&stack.session);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let with = |field: &str, value: serde_json::Value| {
        let mut b = bike();
        b[field] = value;
        b.to_string()
    };
    let cases = [
        ("empty title", with("title", json!("")), 422),
        (
            "negative price",
            with("price", json!({"amount_minor": -5, "currency": "RUB"})),
            422,
        ),
        (
            "lower-case currency",
            with("price", json!({"amount_minor": 5, "currency": "rub"})),
            422,
        ),
        (
            "category with spaces",
            with("category", json!("Road Bikes")),
            422,
        ),
        ("eleven photos", with("photos", json!(vec!["m"; 11])), 422),
        ("a status on create", with("status", json!("BANNED")), 422),
        ("an unknown field", with("colour", json!("red")), 422),
        (
            "a description too long",
            with("description", json!("d".repeat(5001))),
            422,
        ),
        (
            "a body over 64 KiB",
            with("description", json!("d".repeat(70_000))),
            413,
        ),
    ];
    for (what, body, want) in cases {
        assert_problem(
            &raw(gw, "POST", "/v1/ads", &headers, &body).await,
            want,
            what,
        );
    }
    assert_problem(
        &raw(
            gw,
            "POST",
            "/v1/ads",
            &[("content-type", "application/json")],
            &bike().to_string(),
        )
        .await,
        401,
        "anonymous create",
    );
    assert_problem(
        &raw(gw, "GET", "/v1/ads/no-such-ad", &[], "").await,
        404,
        "unknown ad",
    );
    let long = format!("/v1/ads/{}", "x".repeat(100));
    assert_problem(&raw(gw, "GET", &long, &[], "").await, 404, "overlong id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_pays_the_ads_price_at_order_time_and_a_changed_price_is_confirmed_first() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let seller = support::register_and_login(&stack.gateway, "seller2@stack.test").await;
    let seller_auth = bearer(&seller);
    let created = raw(
        gw,
        "POST",
        "/v1/ads",
        &[
            ("content-type", "application/json"),
            ("authorization", &seller_auth),
        ],
        &bike().to_string(),
    )
    .await;
    let ad: AdView = serde_json::from_str(&created.2).expect("ad");
    let seen = json!({"amount_minor": 2_500_000, "currency": "RUB"});
    // The seller lowers the price after the buyer saw it.
    let patched = raw(
        gw,
        "PATCH",
        &format!("/v1/ads/{}", ad.ad_id),
        &[
            ("content-type", "application/json"),
            ("authorization", &seller_auth),
            ("if-match", "\"1\""),
        ],
        &json!({"price": {"amount_minor": 2_000_000, "currency": "RUB"}}).to_string(),
    )
    .await;
    assert_eq!(patched.0, 200, "{}", patched.2);
    let buyer = bearer(&stack.session);
    let order_with = |expected: serde_json::Value| {
        let body = json!({"ad_id": ad.ad_id, "expected_price": expected}).to_string();
        let buyer = buyer.clone();
        async move {
            raw(
                gw,
                "POST",
                "/v1/orders",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &buyer),
                ],
                &body,
            )
            .await
        }
    };
    assert_problem(
        &order_with(seen).await,
        409,
        "the price the buyer saw is gone",
    );
    let placed = order_with(json!({"amount_minor": 2_000_000, "currency": "RUB"})).await;
    assert_eq!(placed.0, 201, "{}", placed.2);
    let order: gateway::OrderView = serde_json::from_str(&placed.2).expect("order");
    assert_eq!(
        (order.amount_minor, order.ad_id.as_str(), order.ad_version),
        (2_000_000, ad.ad_id.as_str(), 2)
    );
    assert_eq!(order.item, "Road bike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_gateways_cached_card_is_dropped_when_the_ad_changes() {
    let stack = support::start(|_| {}).await;
    let (other, _stop) = support::gateway_beside(&stack, "second", None).await;
    let other = format!("http://{other}");
    let client = stack.client();
    let auth = bearer(&stack.session);
    let ad: AdView = client
        .post_json(
            &format!("{}/v1/ads", stack.gateway),
            &[("authorization", auth.as_str())],
            &bike(),
        )
        .await
        .expect("posted");
    let card = format!("{other}/v1/ads/{}", ad.ad_id);
    // The second gateway caches the card on its first anonymous read (it may take a moment
    // to reach its key set and the ad service).
    let started = tokio::time::Instant::now();
    let cached_at = loop {
        if let Ok(r) = client.send("GET", &card, &[], None).await {
            if r.status == 200 {
                break tokio::time::Instant::now();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the second gateway never served the card"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let again = client
        .send("GET", &card, &[("if-none-match", "\"1\"")], None)
        .await
        .expect("read");
    assert_eq!(again.status, 304, "served from the cache, unchanged");
    // A change through the first gateway reaches the second through ad.changed, long before
    // the card's TTL would have ended it.
    let patched = client
        .send(
            "PATCH",
            &format!("{}/v1/ads/{}", stack.gateway, ad.ad_id),
            &[("authorization", auth.as_str()), ("if-match", "\"1\"")],
            Some(&json!({"title": "Road bike, repainted"})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.status, 200);
    loop {
        let r = client
            .send("GET", &card, &[("if-none-match", "\"1\"")], None)
            .await
            .expect("read");
        if r.status == 200 {
            assert_eq!(r.header("etag"), Some("\"2\""));
            break;
        }
        assert!(
            cached_at.elapsed() < gateway::cache::TTL,
            "the second gateway kept the stale card until its TTL: not invalidated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
