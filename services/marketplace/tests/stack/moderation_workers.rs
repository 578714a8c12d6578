//! Three moderation worker processes on the real cluster, one SIGKILLed mid-batch: the group
//! rebalances, and every report is decided exactly once.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use gateway::{AdView, ReportView};
use platform::http::HttpClient;
use sqlx::Row;

use crate::support::{self, bearer};

const ADS: usize = 20;
const REPORTERS: usize = 3;

/// A `marketplace serve moderation` process of the stack's schemas and groups, deciding
/// through the stack's fake provider (slow, so a batch is under way when it dies).
fn worker(stack: &support::Stack, n: usize) -> Child {
    let s = &stack.settings;
    Command::new(env!("CARGO_BIN_EXE_marketplace"))
        .args(["serve", "moderation"])
        .env("DATABASE_URL", &s.database_url)
        .env("KAFKA_BOOTSTRAP", &s.kafka_bootstrap)
        .env("SCHEMA_PREFIX", &s.schema_prefix)
        .env("INSTANCE_ID", format!("worker-{n}"))
        .env(
            "MODERATION_PROVIDER_URL",
            format!("http://{}", support::listen(s, "moderator")),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker process")
}

#[tokio::test]
async fn three_worker_processes_one_killed_mid_batch_decide_every_report_once() {
    let stack = support::start_without(&["moderation"], |s| {
        s.moderator.fail_per_mille = 0;
        s.moderator.late_per_mille = 0;
        s.moderator.latency_ms = 150;
    })
    .await;
    let client = HttpClient::new(Duration::from_secs(10));
    let seller = support::register_and_login(&stack.gateway, "many-ads@stack.test").await;
    let mut ads = Vec::new();
    for i in 0..ADS {
        let body = serde_json::json!({
            "title": format!("Thing {i}"), "price": {"amount_minor": 100 + i, "currency": "RUB"},
            "category": "misc", "region": "msk",
        });
        let ad: AdView = client
            .post_json(
                &format!("{}/v1/ads", stack.gateway),
                &[("authorization", &bearer(&seller))],
                &body,
            )
            .await
            .expect("an ad");
        ads.push(ad.ad_id);
    }
    let mut workers: Vec<Child> = (1..=3).map(|n| worker(&stack, n)).collect();
    let mut reports = Vec::new();
    for r in 0..REPORTERS {
        let session =
            support::register_and_login(&stack.gateway, &format!("reporter-{r}@stack.test")).await;
        for ad in &ads {
            let body = serde_json::json!({"target_kind": "AD", "target_id": ad, "reason": "spam"});
            let report: ReportView = client
                .post_json(
                    &format!("{}/v1/reports", stack.gateway),
                    &[("authorization", &bearer(&session))],
                    &body,
                )
                .await
                .expect("a report");
            reports.push(report.report_id);
        }
    }
    let pool = sqlx::PgPool::connect(&stack.settings.database_url)
        .await
        .expect("postgres");
    let decisions = format!("\"{}moderation\".decisions", stack.settings.schema_prefix);
    let decided = |pool: sqlx::PgPool, table: String| async move {
        sqlx::query(&format!("SELECT count(DISTINCT task_id) AS n FROM {table}"))
            .fetch_one(&pool)
            .await
            .map(|r| r.get::<i64, _>("n"))
            .unwrap_or(0)
    };
    // SIGKILL one worker once some tasks are decided, while the rest are under way.
    let started = tokio::time::Instant::now();
    while decided(pool.clone(), decisions.clone()).await < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no decision within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    workers[0].kill().expect("SIGKILL");
    let _ = workers[0].wait();
    let total = reports.len() as i64;
    let killed_at = decided(pool.clone(), decisions.clone()).await;
    assert!(
        killed_at < total,
        "the batch was over before the kill ({killed_at} of {total})"
    );
    while decided(pool.clone(), decisions.clone()).await < total {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every report decided within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let twice: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT task_id, count(*) FROM {decisions} GROUP BY task_id HAVING count(*) > 1"
    ))
    .fetch_all(&pool)
    .await
    .expect("query");
    assert!(twice.is_empty(), "decided more than once: {twice:?}");
    // Every report shows its decision.
    let reports_table = format!("\"{}reports\".reports", stack.settings.schema_prefix);
    let started = tokio::time::Instant::now();
    loop {
        let open: i64 = sqlx::query(&format!(
            "SELECT count(*) AS n FROM {reports_table} WHERE status <> 'DECIDED'"
        ))
        .fetch_one(&pool)
        .await
        .map(|r| r.get::<i64, _>("n"))
        .expect("query");
        if open == 0 {
            break;
        }
        // The killed worker may hold the relay lease (30 s) over rows it did not publish.
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{open} reports still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The surviving workers published every result (through their outbox) before they go.
    for w in workers.iter_mut().skip(1) {
        let _ = w.kill();
        let _ = w.wait();
    }
    println!(
        "{total} reports; a worker was SIGKILLed after {killed_at} decisions; none decided twice"
    );
}
