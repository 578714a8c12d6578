//! Accounts, sessions and bearer authentication through the gateway, on the real stack
//! (argon2id at the production cost, keys in PostgreSQL).

use std::sync::Arc;

use adapters::PgStore;
use auth::{Claims, KeySet, PublicKey, SigningKey};
use gateway::{OrderView, SessionView, UserView};
use platform::{http::HttpClient, ports::Store};
use serde_json::json;
use user::{UserAnswer, UserQuery, UserSchema};

use crate::{
    bad_input::{assert_problem, raw},
    support::{self, bearer, PASSWORD},
};

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn status_of(e: platform::http::HttpError) -> u16 {
    match e {
        platform::http::HttpError::Status { status, .. } => status,
        other => panic!("expected an HTTP status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_profile_refresh_and_logout_work_end_to_end() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let public = [("content-type", "application/json")];
    let body =
        r#"{"email":"  Ann@Example.org ","password":"correct horse battery","display_name":"Ann"}"#;
    let created = raw(gw, "POST", "/v1/users", &public, body).await;
    assert_eq!(created.0, 201, "{}", created.2);
    assert_eq!(
        created.1.get("location").and_then(|v| v.to_str().ok()),
        Some("/v1/users/me")
    );
    let user: UserView = serde_json::from_str(&created.2).expect("user");
    assert_eq!(user.email, "Ann@Example.org");
    // One account per email, whatever its case.
    let again = r#"{"email":"ann@EXAMPLE.org","password":"another password","display_name":"A2"}"#;
    assert_problem(
        &raw(gw, "POST", "/v1/users", &public, again).await,
        409,
        "same email",
    );

    let login = raw(
        gw,
        "POST",
        "/v1/sessions",
        &public,
        r#"{"email":"ANN@example.org","password":"correct horse battery"}"#,
    )
    .await;
    assert_eq!(login.0, 200, "{}", login.2);
    assert_eq!(
        login.1.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let session: SessionView = serde_json::from_str(&login.2).expect("session");
    assert_eq!(
        (session.token_type.as_str(), session.user_id.as_str()),
        ("Bearer", user.user_id.as_str())
    );
    assert_eq!(session.expires_in, 900);

    // The token verifies with the published keys alone.
    let jwks: auth::Jwks = stack
        .client()
        .get_json(&format!("{}/.well-known/jwks.json", stack.gateway))
        .await
        .expect("jwks");
    let keys: Vec<PublicKey> = jwks
        .keys
        .iter()
        .map(|k| PublicKey {
            kid: k.kid.clone(),
            x: k.x.clone(),
            created_ms: 0,
        })
        .collect();
    let claims = KeySet::new(&keys)
        .expect("keys")
        .verify(&session.access_token)
        .expect("valid");
    assert_eq!(claims.sub, user.user_id);

    // Profile, with optimistic concurrency through ETag / If-Match.
    let auth = bearer(&session);
    let me = raw(gw, "GET", "/v1/users/me", &[("authorization", &auth)], "").await;
    assert_eq!(me.0, 200, "{}", me.2);
    let etag =
        me.1.get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("etag")
            .to_owned();
    let patch = |if_match: &'static str| {
        let auth = auth.clone();
        async move {
            let mut h = vec![
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
            ];
            if !if_match.is_empty() {
                h.push(("if-match", if_match));
            }
            raw(
                gw,
                "PATCH",
                "/v1/users/me",
                &h,
                r#"{"display_name":"Ann B."}"#,
            )
            .await
        }
    };
    assert_problem(&patch("\"9\"").await, 412, "stale If-Match");
    assert_problem(&patch("W/whatever").await, 400, "malformed If-Match");
    let h = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("if-match", etag.as_str()),
    ];
    let patched = raw(
        gw,
        "PATCH",
        "/v1/users/me",
        &h,
        r#"{"display_name":"Ann B."}"#,
    )
    .await;
    assert_eq!(patched.0, 200, "{}", patched.2);
    assert_ne!(
        patched.1.get("etag").and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );
    assert!(patched.2.contains("Ann B."));

    // Refresh rotates; a spent token presented again revokes the whole family.
    let client = HttpClient::new(std::time::Duration::from_secs(10));
    let refresh = |token: String| {
        let client = client.clone();
        let url = format!("{}/v1/sessions/refresh", stack.gateway);
        async move {
            client
                .post_json::<_, SessionView>(&url, &[], &json!({"refresh_token": token}))
                .await
        }
    };
    let second = refresh(session.refresh_token.clone())
        .await
        .expect("refreshed");
    assert_ne!(second.refresh_token, session.refresh_token);
    assert_eq!(
        status_of(
            refresh(session.refresh_token.clone())
                .await
                .expect_err("spent")
        ),
        401
    );
    assert_eq!(
        status_of(
            refresh(second.refresh_token.clone())
                .await
                .expect_err("family revoked")
        ),
        401
    );

    // Logout ends a session's refreshes.
    let third: SessionView = client
        .post_json(
            &format!("{}/v1/sessions", stack.gateway),
            &[],
            &json!({"email": "ann@example.org", "password": PASSWORD}),
        )
        .await
        .expect("login again");
    let out = raw(
        gw,
        "POST",
        "/v1/sessions/logout",
        &public,
        &json!({"refresh_token": third.refresh_token}).to_string(),
    )
    .await;
    assert_eq!(out.0, 204, "{}", out.2);
    assert_eq!(
        status_of(
            refresh(third.refresh_token.clone())
                .await
                .expect_err("logged out")
        ),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_expired_and_foreign_tokens_get_401_with_a_challenge() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let path = "/v1/users/me";
    let missing = raw(gw, "GET", path, &[], "").await;
    assert_problem(&missing, 401, "no token");
    assert_eq!(
        missing
            .1
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"marketplace\"")
    );

    // The real signing key, read where the user service keeps it, signs the bad claims.
    let store = PgStore::<UserSchema>::connect(
        &stack.settings.database_url,
        &adapters::SchemaName::parse(&format!("{}users", stack.settings.schema_prefix))
            .expect("schema"),
    )
    .await
    .expect("users store");
    let store: Arc<dyn Store<UserSchema>> = Arc::new(store);
    let UserAnswer::Keys(rows) = store.query(UserQuery::Keys).await.expect("keys") else {
        panic!("keys")
    };
    let key = SigningKey::from_stored(&rows[0].kid, &rows[0].seed, 0).expect("key");
    let sub = stack.session.user_id.clone();
    let now = now_s();
    let sign = |c: &Claims| format!("Bearer {}", key.sign(c).expect("sign"));
    let good = sign(&Claims::new(&sub, now, 60, "j"));
    assert_eq!(
        raw(gw, "GET", path, &[("authorization", &good)], "")
            .await
            .0,
        200
    );

    let expired = sign(&Claims::new(&sub, now - 3600, 60, "j"));
    let mut other_audience = Claims::new(&sub, now, 60, "j");
    other_audience.aud = "another-api".into();
    let mut other_issuer = Claims::new(&sub, now, 60, "j");
    other_issuer.iss = "evil".into();
    let mut not_yet = Claims::new(&sub, now, 600, "j");
    not_yet.nbf = now + 300;
    let forged = format!(
        "Bearer {}",
        SigningKey::from_seed(&rows[0].kid, [7; 32], 0)
            .sign(&Claims::new(&sub, now, 60, "j"))
            .expect("sign")
    );
    let none = {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, rows[0].kid));
        let c = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&Claims::new(&sub, now, 60, "j")).expect("json"));
        format!("Bearer {h}.{c}.")
    };
    let cases = [
        ("expired", expired),
        ("another audience", sign(&other_audience)),
        ("another issuer", sign(&other_issuer)),
        ("not yet valid", sign(&not_yet)),
        ("signed by another key under the real kid", forged),
        ("alg none", none),
        ("garbage", "Bearer not.a.jwt".to_owned()),
        ("another scheme", "Basic YTpi".to_owned()),
        ("empty bearer", "Bearer ".to_owned()),
    ];
    for (what, header) in cases {
        let answer = raw(gw, "GET", path, &[("authorization", &header)], "").await;
        assert_problem(&answer, 401, what);
        let challenge = answer
            .1
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"marketplace\", error="),
            "{what}: {challenge}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_shown_to_its_owner_only() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let mine = stack.place_order(Some("same-key")).await;
    assert_eq!(mine.customer_id, stack.session.user_id);
    let other = support::register_and_login(&stack.gateway, "other@stack.test").await;
    let theirs: OrderView = stack
        .client()
        .post_json(
            &format!("{}/v1/orders", stack.gateway),
            &[
                ("authorization", &bearer(&other)),
                ("idempotency-key", "same-key"),
            ],
            &stack.order_body(),
        )
        .await
        .expect("their order");
    assert_ne!(
        theirs.order_id, mine.order_id,
        "one key, two users: two orders"
    );

    let path = format!("/v1/orders/{}", mine.order_id);
    let as_owner = raw(
        gw,
        "GET",
        &path,
        &[("authorization", &bearer(&stack.session))],
        "",
    )
    .await;
    assert_eq!(as_owner.0, 200, "{}", as_owner.2);
    let as_other = raw(gw, "GET", &path, &[("authorization", &bearer(&other))], "").await;
    assert_problem(&as_other, 404, "another user's order");
    let unknown = raw(
        gw,
        "GET",
        "/v1/orders/00000000-0000-4000-8000-000000000000",
        &[("authorization", &bearer(&other))],
        "",
    )
    .await;
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&as_other.2).expect("json"),
        serde_json::from_str(&unknown.2).expect("json"),
    );
    assert_eq!(
        a["title"], b["title"],
        "another's order looks like no order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_account_with_retry_after() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let public = [("content-type", "application/json")];
    let wrong = r#"{"email":"first@stack.test","password":"wrong password"}"#;
    for i in 0..5 {
        let answer = raw(gw, "POST", "/v1/sessions", &public, wrong).await;
        assert_problem(&answer, 401, &format!("failure {i}"));
    }
    let right = format!(r#"{{"email":"first@stack.test","password":"{PASSWORD}"}}"#);
    let throttled = raw(gw, "POST", "/v1/sessions", &public, &right).await;
    assert_problem(
        &throttled,
        429,
        "sixth attempt, even with the right password",
    );
    let retry_after: u64 = throttled
        .1
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // An unknown account costs the same and is refused the same way.
    let unknown = raw(
        gw,
        "POST",
        "/v1/sessions",
        &public,
        r#"{"email":"nobody@stack.test","password":"whatever pw"}"#,
    )
    .await;
    assert_problem(&unknown, 401, "unknown account");
    // Other accounts from the same address still log in.
    support::register_and_login(&stack.gateway, "second@stack.test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_client_address_across_accounts() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let public = [("content-type", "application/json")];
    // 50 failures from this address, spread over accounts that each stay under their own
    // limit of 5.
    for i in 0..50 {
        let body = format!(
            r#"{{"email":"nobody-{}@stack.test","password":"wrong password"}}"#,
            i / 4
        );
        let answer = raw(gw, "POST", "/v1/sessions", &public, &body).await;
        assert_problem(&answer, 401, &format!("failure {i}"));
    }
    // Now even a right pair for a fresh account is refused from this address.
    let right = format!(r#"{{"email":"first@stack.test","password":"{PASSWORD}"}}"#);
    let throttled = raw(gw, "POST", "/v1/sessions", &public, &right).await;
    assert_problem(&throttled, 429, "the address is over its limit");
    assert!(throttled.1.get("retry-after").is_some());
}
