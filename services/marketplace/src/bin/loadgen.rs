//! `loadgen URL RATE SECONDS OUT.csv [orders|searches|logins]` — open-loop, fixed-rate load:
//! one request every 1/RATE s for SECONDS, whatever the answers (a closed-loop tool like wrk
//! slows down with the server and hides its overload).
//!
//! It first registers [`USERS`] accounts and logs each in, and a seller who posts one ad.
//! `orders` (the default) then sends `POST /v1/orders` for that ad as those users in turn,
//! each with its own idempotency key; `searches` sends `GET /v1/search` with [`SEARCHES`] in
//! turn (words in Russian and English, filters, sorts; `Cache-Control: no-cache`, so the index
//! answers each, not the gateway's page cache); `logins` sends `POST /v1/sessions`
//! for the users (password hashing at the stack's argon2 cost). Writes one CSV row per
//! request (`key,status,order_id,sent_ms,answered_ms`; times in ms since the epoch, status 0
//! for no answer; `order_id` empty but for orders) and prints a one-line summary with the
//! answered requests' latency percentiles. Used by `ci/bench-stack` and `ci/bench-front`.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use platform::http::{HttpClient, HttpError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Created {
    order_id: String,
}

#[derive(Deserialize)]
struct Session {
    access_token: String,
}

/// Accounts the load is spread over.
const USERS: usize = 8;
const PASSWORD: &str = "load generator password";

/// The searches of `searches` mode, in turn.
const SEARCHES: [&str; 10] = [
    "q=%D0%B2%D0%B5%D0%BB%D0%BE%D1%81%D0%B8%D0%BF%D0%B5%D0%B4",
    "q=red+bike&category=bikes",
    "category=home&sort=price_asc",
    "q=oak+table&region=msk&sort=newest",
    "q=%D0%BB%D0%B0%D0%BC%D0%BF%D0%B0&price_max=50000",
    "sort=newest",
    "q=vintage+leather+sofa",
    "q=%22mountain+bike%22",
    "price_min=1000&price_max=5000&sort=price_desc",
    "q=chair&limit=100",
];

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `POST url body`, retried for a while on transient failures (the stack may be starting).
async fn post_patiently<R: serde::de::DeserializeOwned>(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Result<R, HttpError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.post_json(url, headers, body).await {
            Err(e) if e.is_transient() && attempts < 60 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            r => return r,
        }
    }
}

/// Registers and logs in `USERS` accounts of this run (their `authorization` headers), and
/// one more that posts the ad every order buys (its id).
async fn sessions(
    client: &HttpClient,
    base: &str,
    run: &str,
) -> anyhow::Result<(Vec<String>, String)> {
    let mut out = Vec::new();
    for u in 0..=USERS {
        let email = format!("load-{run}-{u}@bench.test");
        let body =
            serde_json::json!({"email": email, "password": PASSWORD, "display_name": "load"});
        post_patiently::<serde_json::Value>(client, &format!("{base}/v1/users"), &[], &body)
            .await
            .map_err(|e| anyhow::anyhow!("register {email}: {e}"))?;
        let body = serde_json::json!({"email": email, "password": PASSWORD});
        let s: Session = post_patiently(client, &format!("{base}/v1/sessions"), &[], &body)
            .await
            .map_err(|e| anyhow::anyhow!("login {email}: {e}"))?;
        out.push(format!("Bearer {}", s.access_token));
    }
    let seller = out.pop().unwrap_or_default();
    let ad = serde_json::json!({
        "title": "bench item", "price": {"amount_minor": 1_000, "currency": "RUB"},
        "category": "bench", "region": "msk",
    });
    let listing: serde_json::Value = post_patiently(
        client,
        &format!("{base}/v1/ads"),
        &[("authorization", seller.as_str())],
        &ad,
    )
    .await
    .map_err(|e| anyhow::anyhow!("post the listing: {e}"))?;
    let ad_id = listing["ad_id"].as_str().unwrap_or_default().to_owned();
    Ok((out, ad_id))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Orders,
    Searches,
    Logins,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, rate, seconds, out, mode) = match args.as_slice() {
        [u, r, s, o] => (u, r, s, o, Mode::Orders),
        [u, r, s, o, m] => {
            let mode = match m.as_str() {
                "orders" => Mode::Orders,
                "searches" => Mode::Searches,
                "logins" => Mode::Logins,
                other => anyhow::bail!("unknown mode {other:?}: orders, searches or logins"),
            };
            (u, r, s, o, mode)
        }
        _ => {
            anyhow::bail!("usage: loadgen URL RATE_PER_S SECONDS OUT.csv [orders|searches|logins]")
        }
    };
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    anyhow::ensure!(
        rate > 0.0 && seconds > 0.0,
        "rate and seconds must be positive"
    );
    let run = format!("{:x}", platform::ids::random_u128() as u64);
    let total = (rate * seconds).round() as u64;
    let client = Arc::new(HttpClient::new(Duration::from_secs(10)));
    let (auth, ad_id) = sessions(&client, url, &run).await?;
    let (auth, ad_id, base) = (Arc::new(auth), Arc::new(ad_id), Arc::new(url.clone()));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Open loop: a late tick fires at once, the schedule never waits for answers.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticks.tick().await;
        let (client, auth, run, ad_id, base) = (
            client.clone(),
            auth.clone(),
            run.clone(),
            ad_id.clone(),
            base.clone(),
        );
        let key = format!("load-{run}-{i}");
        tasks.push(tokio::spawn(async move {
            let sent = now_ms();
            let user = i as usize % USERS;
            let r = match mode {
                Mode::Searches => {
                    let query = SEARCHES[i as usize % SEARCHES.len()];
                    // Past the gateway's page cache: the index answers every one.
                    client
                        .get_json_with::<serde_json::Value>(
                            &format!("{base}/v1/search?{query}"),
                            &[("cache-control", "no-cache")],
                        )
                        .await
                        .map(|_| String::new())
                }
                Mode::Logins => {
                    let body = serde_json::json!({
                        "email": format!("load-{run}-{user}@bench.test"),
                        "password": PASSWORD,
                    });
                    client
                        .post_json::<_, Session>(&format!("{base}/v1/sessions"), &[], &body)
                        .await
                        .map(|_| String::new())
                }
                Mode::Orders => {
                    let body = serde_json::json!({"ad_id": ad_id.as_str()});
                    let headers = [
                        ("idempotency-key", key.as_str()),
                        ("authorization", auth[user].as_str()),
                    ];
                    client
                        .post_json::<_, Created>(&format!("{base}/v1/orders"), &headers, &body)
                        .await
                        .map(|c| c.order_id)
                }
            };
            let (status, order) = match r {
                Ok(id) => (if mode == Mode::Orders { 201 } else { 200 }, id),
                Err(HttpError::Status { status, .. }) => (status, String::new()),
                Err(_) => (0, String::new()),
            };
            (key, status, order, sent, now_ms())
        }));
    }
    let mut csv = String::from("key,status,order_id,sent_ms,answered_ms\n");
    let mut latencies = Vec::new();
    let (mut accepted, mut shed, mut unavailable, mut other) = (0u64, 0u64, 0u64, 0u64);
    for t in tasks {
        let (key, status, order, sent, answered) = t.await?;
        match status {
            200 | 201 => {
                accepted += 1;
                latencies.push(answered.saturating_sub(sent));
            }
            429 => shed += 1,
            503 => unavailable += 1,
            _ => other += 1,
        }
        let _ = writeln!(csv, "{key},{status},{order},{sent},{answered}");
    }
    std::fs::write(out, csv)?;
    latencies.sort_unstable();
    println!(
        "LOAD sent={total} accepted={accepted} shed={shed} unavailable={unavailable} failed={other} p50_ms={} p99_ms={}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}
