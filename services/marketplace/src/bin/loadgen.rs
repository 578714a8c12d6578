//! `loadgen URL RATE SECONDS OUT.csv` — open-loop, fixed-rate load on `POST /v1/orders`: one
//! request every 1/RATE s for SECONDS, each with its own idempotency key, whatever the answers
//! (a closed-loop tool like wrk slows down with the server and hides its overload). Writes one
//! CSV row per request (`key,status,order_id,sent_ms,answered_ms`; times in ms since the
//! epoch, status 0 for no answer) and prints a one-line summary. Used by `ci/bench-stack`.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use platform::http::{HttpClient, HttpError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Created {
    order_id: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, seconds, out] = args.as_slice() else {
        anyhow::bail!("usage: loadgen URL RATE_PER_S SECONDS OUT.csv");
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
    let url = Arc::new(format!("{url}/v1/orders"));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Open loop: a late tick fires at once, the schedule never waits for answers.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticks.tick().await;
        let (client, url) = (client.clone(), url.clone());
        let key = format!("load-{run}-{i}");
        tasks.push(tokio::spawn(async move {
            let sent = now_ms();
            let body = serde_json::json!({
                "customer_id": format!("load-{}", i % 97),
                "item": "bench item",
                "amount_minor": 1_000,
                "currency": "RUB",
            });
            let r = client
                .post_json::<_, Created>(&url, &[("idempotency-key", key.as_str())], &body)
                .await;
            let (status, order) = match r {
                Ok(c) => (201, c.order_id),
                Err(HttpError::Status { status, .. }) => (status, String::new()),
                Err(_) => (0, String::new()),
            };
            (key, status, order, sent, now_ms())
        }));
    }
    let mut csv = String::from("key,status,order_id,sent_ms,answered_ms\n");
    let (mut accepted, mut shed, mut unavailable, mut other) = (0u64, 0u64, 0u64, 0u64);
    for t in tasks {
        let (key, status, order, sent, answered) = t.await?;
        match status {
            200 | 201 => accepted += 1,
            429 => shed += 1,
            503 => unavailable += 1,
            _ => other += 1,
        }
        let _ = writeln!(csv, "{key},{status},{order},{sent},{answered}");
    }
    std::fs::write(out, csv)?;
    println!(
        "LOAD sent={total} accepted={accepted} shed={shed} unavailable={unavailable} failed={other}"
    );
    Ok(())
}
