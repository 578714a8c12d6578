//! `bench-moderation MARKETPLACE_BINARY [TASKS] [PROVIDER_LATENCY_MS]` — moderation throughput
//! on the real cluster with 1, 2 and 3 worker processes (`marketplace serve moderation`).
//!
//! It serves the fake moderation provider itself (no failures, `PROVIDER_LATENCY_MS` per
//! decision, default 20). For each worker count, in fresh Postgres schemas and a fresh
//! consumer group: the workers start and first drain whatever `moderation.tasks` already
//! holds (a new group starts at the earliest offset), which is over once a sentinel task on
//! every partition is decided; then `TASKS` tasks (default 600) are produced at once, and the
//! time until every one of them has its result on `moderation.results` is measured. Prints
//! tasks/s per worker count and the ratio to one worker. Needs `ci/infra/up.sh`'s cluster and
//! PostgreSQL (`DATABASE_URL`, `KAFKA_BOOTSTRAP`).

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use adapters::{KafkaConfig, KafkaEventLog};
use moderation::{ModerationResult, ModerationTask};
use platform::{
    outbox::to_record,
    ports::{ConsumerConfig, EventLog, OutboxRow, ProducerConfig},
    Shutdown,
};

const PARTITIONS: i32 = 12;

fn task(id: String, target: String) -> ModerationTask {
    ModerationTask {
        task_id: id,
        target_kind: "AD".into(),
        target_id: target,
        reporter_id: "bench".into(),
        reason: "spam".into(),
        comment: String::new(),
        created_ms: 0,
    }
}

/// Produces `tasks` (through the outbox's record format, as the report service's relay does).
async fn produce(events: &KafkaEventLog, tasks: &[ModerationTask]) -> anyhow::Result<()> {
    let producer = events.producer(ProducerConfig::default()).await?;
    let sends = tasks.iter().map(|t| {
        let record = to_record(&OutboxRow {
            id: 0,
            message: t.message(),
            created_ms: 0,
        });
        let producer = producer.clone();
        async move { producer.send(record).await }
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

/// Reads `moderation.results` from the end of what `group` has seen until every id of
/// `waiting` has a result.
async fn await_results(
    events: &KafkaEventLog,
    group: &str,
    mut waiting: BTreeSet<String>,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut consumer = events
        .consumer(
            ConsumerConfig::new(group),
            &[platform::topics::MODERATION_RESULTS],
        )
        .await?;
    let started = tokio::time::Instant::now();
    while !waiting.is_empty() {
        anyhow::ensure!(
            started.elapsed() < deadline,
            "{} tasks still undecided after {deadline:?}",
            waiting.len()
        );
        let records = consumer.poll(Duration::from_millis(200)).await?;
        for r in &records {
            if let Ok(result) = serde_json::from_slice::<ModerationResult>(&r.payload) {
                waiting.remove(&result.task_id);
            }
        }
        if !records.is_empty() {
            consumer.commit(&records).await?;
        }
    }
    Ok(())
}

fn workers(binary: &str, prefix: &str, provider: &str, n: usize) -> Vec<Child> {
    (1..=n)
        .map(|i| {
            Command::new(binary)
                .args(["serve", "moderation"])
                .env("SCHEMA_PREFIX", prefix)
                .env("INSTANCE_ID", format!("bench-{i}"))
                .env("MODERATION_PROVIDER_URL", provider)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a worker")
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let binary = args.first().cloned().ok_or_else(|| {
        anyhow::anyhow!("usage: bench-moderation MARKETPLACE_BINARY [TASKS] [PROVIDER_LATENCY_MS]")
    })?;
    let tasks_n: usize = args.get(1).map_or(Ok(600), |v| v.parse())?;
    let latency_ms: u64 = args.get(2).map_or(Ok(20), |v| v.parse())?;
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP")
        .unwrap_or_else(|_| "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094".into());
    let events = KafkaEventLog::connect(KafkaConfig::new(bootstrap)).await?;
    events.ensure_listed_topics().await?;
    // The fake provider, in this process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider = format!("http://{}", listener.local_addr()?);
    let (_stop, shutdown) = Shutdown::new();
    let config = fakes::moderator::ModeratorConfig {
        fail_per_mille: 0,
        late_per_mille: 0,
        latency_ms,
        late_ms: 0,
    };
    tokio::spawn(fakes::moderator::run(
        listener,
        config,
        Arc::default(),
        shutdown,
    ));
    let run = format!("{:08x}", uuid_like());
    let mut base = None;
    println!("moderation: {tasks_n} tasks, provider latency {latency_ms} ms, 12 partitions");
    for n in 1..=3usize {
        let prefix = format!("bm{run}_{n}_");
        let mut children = workers(&binary, &prefix, &provider, n);
        // Drain the topic's backlog: a sentinel on every partition.
        let mut sentinels = Vec::new();
        let mut k = 0u32;
        let mut covered = BTreeSet::new();
        while covered.len() < PARTITIONS as usize {
            let key = format!("sentinel-{run}-{n}-{k}");
            let p = platform::partitioner::partition_for_key(key.as_bytes(), PARTITIONS);
            if covered.insert(p) {
                sentinels.push(task(format!("{key}-task"), key));
            }
            k += 1;
        }
        produce(&events, &sentinels).await?;
        let group = format!("{prefix}bench-results");
        await_results(
            &events,
            &group,
            sentinels.iter().map(|t| t.task_id.clone()).collect(),
            Duration::from_secs(600),
        )
        .await?;
        let batch: Vec<ModerationTask> = (0..tasks_n)
            .map(|i| task(format!("{run}-{n}-{i}"), format!("target-{run}-{i}")))
            .collect();
        let started = tokio::time::Instant::now();
        produce(&events, &batch).await?;
        await_results(
            &events,
            &group,
            batch.iter().map(|t| t.task_id.clone()).collect(),
            Duration::from_secs(600),
        )
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let rate = tasks_n as f64 / elapsed;
        let base_rate = *base.get_or_insert(rate);
        println!(
            "{n} worker(s): {tasks_n} tasks in {elapsed:.1} s = {rate:.1} tasks/s, {:.2}x one worker",
            rate / base_rate
        );
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    Ok(())
}

/// A run id unlikely to repeat (the clock's nanoseconds and the pid).
fn uuid_like() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id()
}
