//! No IDOR: every resource a user owns, read or acted on by its id with another user's valid
//! token, is refused — 403 where the resource is public to read (an ad and its photos), 404
//! where even its existence is its owner's (a report, an order) — with problem+json, and the
//! refusal changes nothing the owner sees.

use gateway::{AdView, UploadView};
use serde_json::json;

use crate::{
    bad_input::{assert_problem, raw},
    support::{self, bearer},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_token_opens_none_of_a_users_resources() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let owner = bearer(&stack.session);
    let intruder = support::register_and_login(&stack.gateway, "intruder@stack.test").await;
    let other = bearer(&intruder);
    let send = |auth: String,
                method: &'static str,
                path: String,
                extra: Vec<(&'static str, String)>,
                body: String| async move {
        let mut headers = vec![
            ("authorization", auth),
            ("content-type", "application/json".to_owned()),
        ];
        headers.extend(extra);
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        raw(gw, method, &path, &hs, &body).await
    };
    let json_of = |answer: &(u16, hyper::HeaderMap, String), want: u16, what: &str| {
        assert_eq!(answer.0, want, "{what}: {}", answer.2);
        serde_json::from_str::<serde_json::Value>(&answer.2).expect("json")
    };

    // The owner's resources: an ad, an upload slot for a photo of it, a report, an order.
    let ad_body = json!({
        "title": "Armchair", "price": {"amount_minor": 5_000, "currency": "RUB"},
        "category": "home", "region": "msk",
    });
    let created = send(
        owner.clone(),
        "POST",
        "/v1/ads".into(),
        vec![],
        ad_body.to_string(),
    )
    .await;
    let ad: AdView =
        serde_json::from_value(json_of(&created, 201, "the owner's ad")).expect("an ad");
    let ad_path = format!("/v1/ads/{}", ad.ad_id);
    let slot = send(
        owner.clone(),
        "POST",
        format!("{ad_path}/photos"),
        vec![],
        json!({"content_type": "image/png", "size_bytes": 10}).to_string(),
    )
    .await;
    let slot: UploadView =
        serde_json::from_value(json_of(&slot, 201, "the owner's upload slot")).expect("a slot");
    let report = send(
        owner.clone(),
        "POST",
        "/v1/reports".into(),
        vec![],
        json!({"target_kind": "USER", "target_id": intruder.user_id, "reason": "spam"}).to_string(),
    )
    .await;
    let report_path = format!(
        "/v1/reports/{}",
        json_of(&report, 202, "the owner's report")["report_id"]
            .as_str()
            .expect("a report id")
    );
    let order_path = format!("/v1/orders/{}", stack.place_order(None).await.order_id);

    // Every act on them with the intruder's token.
    let tag = || vec![("if-match", format!("\"{}\"", ad.version))];
    let price = json!({"amount_minor": 1, "currency": "RUB"});
    let photo = json!({"content_type": "image/png", "size_bytes": 10}).to_string();
    let replace = json!({"title": "Mine now", "price": price, "category": "home", "region": "msk"});
    let attempts = [
        Attempt::new("replace the ad", "PUT", &ad_path, 403).with(tag(), replace.to_string()),
        Attempt::new("edit the ad", "PATCH", &ad_path, 403)
            .with(tag(), json!({ "price": price }).to_string()),
        Attempt::new("delete the ad", "DELETE", &ad_path, 403).with(tag(), String::new()),
        Attempt::new(
            "add a photo to the ad",
            "POST",
            &format!("{ad_path}/photos"),
            403,
        )
        .with(vec![], photo),
        Attempt::new(
            "complete the owner's photo",
            "POST",
            &slot.complete_url,
            403,
        ),
        Attempt::new("read the report", "GET", &report_path, 404),
        Attempt::new("read the order", "GET", &order_path, 404),
    ];
    for a in attempts {
        let answer = send(other.clone(), a.method, a.path, a.headers, a.body).await;
        assert_problem(
            &answer,
            a.want,
            &format!("the intruder tries to {}", a.what),
        );
    }

    // Nothing changed for the owner.
    let seen = send(owner.clone(), "GET", ad_path, vec![], String::new()).await;
    let seen: AdView =
        serde_json::from_value(json_of(&seen, 200, "the owner's ad")).expect("an ad");
    assert_eq!(
        (seen.version, seen.title.as_str(), seen.price.amount_minor),
        (ad.version, "Armchair", 5_000),
        "the ad is as its owner left it"
    );
    for path in [report_path, order_path] {
        let answer = send(owner.clone(), "GET", path.clone(), vec![], String::new()).await;
        assert_eq!(answer.0, 200, "the owner reads {path}: {}", answer.2);
    }
}

/// One act on another user's resource, and the status it must be refused with.
struct Attempt {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    want: u16,
}

impl Attempt {
    fn new(what: &'static str, method: &'static str, path: &str, want: u16) -> Self {
        Attempt {
            what,
            method,
            path: path.to_owned(),
            headers: vec![],
            body: String::new(),
            want,
        }
    }

    fn with(self, headers: Vec<(&'static str, String)>, body: String) -> Self {
        Attempt {
            headers,
            body,
            ..self
        }
    }
}
