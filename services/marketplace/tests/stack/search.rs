//! Search on the real stack: ads posted through the gateway become findable through
//! `ad.changed` and the search service's index (Russian and English stemming, filters,
//! sorts, cursors), a hidden ad stops being found, and bad parameters get problem+json.

use std::time::Duration;

use gateway::{AdView, SearchResults};
use serde_json::json;

use crate::{
    bad_input::{assert_problem, raw},
    support::{self, bearer},
};

/// Searches with `query` until `done` holds for the results (the index follows the ads
/// asynchronously), within 30 s.
async fn until(
    stack: &support::Stack,
    query: &str,
    done: impl Fn(&SearchResults) -> bool,
) -> SearchResults {
    let url = format!("{}/v1/search?{query}", stack.gateway);
    let started = tokio::time::Instant::now();
    loop {
        let r: SearchResults = stack.client().get_json(&url).await.expect("search answers");
        if done(&r) {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{query}: never converged; last {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn titles(r: &SearchResults) -> Vec<&str> {
    r.items.iter().map(|i| i.title.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_ads_are_found_by_words_filters_and_sorts_and_hidden_ones_are_not() {
    let stack = support::start(|_| {}).await;
    let auth = bearer(&stack.session);
    // `ad.changed` outlives test runs and is shared by the stacks of concurrent tests: this
    // test's ads are in categories of its own, and every search names one.
    let tag: String = stack
        .settings
        .schema_prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let (bikes, home) = (format!("bikes-{tag}"), format!("home-{tag}"));
    let post = |title: &str, category: &str, region: &str, price: i64| {
        let body = json!({
            "title": title, "description": "", "category": category, "region": region,
            "price": {"amount_minor": price, "currency": "RUB"},
        });
        let (client, url, auth) = (
            stack.client(),
            format!("{}/v1/ads", stack.gateway),
            auth.clone(),
        );
        async move {
            client
                .post_json::<_, AdView>(&url, &[("authorization", auth.as_str())], &body)
                .await
                .expect("posted")
        }
    };
    let bike_ru = post("Горный велосипед", &bikes, "msk", 30_000).await;
    let bike_en = post("Road bikes for kids", &bikes, "nsk", 15_000).await;
    let table = post("Oak table", &home, "msk", 50_000).await;

    // Russian and English stemming: other forms of the words find them.
    let r = until(
        &stack,
        &format!("category={bikes}&q=велосипеды"),
        |r| !r.items.is_empty(),
    )
    .await;
    assert_eq!(titles(&r), ["Горный велосипед"]);
    let r = until(&stack, &format!("category={bikes}&q=bike"), |r| {
        !r.items.is_empty()
    })
    .await;
    assert_eq!(titles(&r), ["Road bikes for kids"]);
    // Filters and sorts.
    let r = until(&stack, &format!("category={bikes}&sort=price_asc"), |r| {
        r.items.len() == 2
    })
    .await;
    assert_eq!(titles(&r), ["Road bikes for kids", "Горный велосипед"]);
    let r = until(
        &stack,
        &format!("category={bikes}&region=msk&price_min=20000&price_max=60000"),
        |r| r.items.len() == 1,
    )
    .await;
    assert_eq!(titles(&r), ["Горный велосипед"]);
    let r = until(
        &stack,
        &format!("category={home}&price_max=60000&sort=price_desc"),
        |r| r.items.len() == 1,
    )
    .await;
    assert_eq!(titles(&r), ["Oak table"]);
    // Keyset pages of one: each of the bikes once, newest first, then no cursor.
    let mut seen = Vec::new();
    let first = format!("category={bikes}&sort=newest&limit=1");
    let mut query = first.clone();
    loop {
        let r: SearchResults = stack
            .client()
            .get_json(&format!("{}/v1/search?{query}", stack.gateway))
            .await
            .expect("page");
        seen.extend(r.items.iter().map(|i| i.ad_id.clone()));
        match r.next_cursor {
            Some(c) => query = format!("{first}&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 10, "pagination does not end");
    }
    assert_eq!(seen, [&bike_en.ad_id, &bike_ru.ad_id].map(|s| s.to_owned()));

    // A hidden ad leaves the index's answers.
    let hide = raw(
        support::listen(&stack.settings, "gateway"),
        "PATCH",
        &format!("/v1/ads/{}", table.ad_id),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("if-match", "\"1\""),
        ],
        r#"{"status":"HIDDEN"}"#,
    )
    .await;
    assert_eq!(hide.0, 200, "{}", hide.2);
    until(&stack, &format!("category={home}&q=oak"), |r| {
        r.items.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_parameters_get_problem_json() {
    let stack = support::start(|_| {}).await;
    let gw = support::listen(&stack.settings, "gateway");
    let long = format!("/v1/search?q={}", "w".repeat(201));
    for (path, want) in [
        ("/v1/search?limit=101", 422),
        ("/v1/search?limit=0", 422),
        ("/v1/search?limit=ten", 400),
        ("/v1/search?sort=cheapest", 422),
        ("/v1/search?cursor=garbage", 422),
        ("/v1/search?price_min=500&price_max=100", 422),
        ("/v1/search?price_min=-1", 422),
        ("/v1/search?category=Not%20A%20Slug", 422),
        ("/v1/search?colour=red", 400),
        (long.as_str(), 422),
    ] {
        assert_problem(&raw(gw, "GET", path, &[], "").await, want, path);
    }
}
