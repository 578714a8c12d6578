//! `bench-notify MARKETPLACE_BINARY [CONNECTIONS] [ORDERS_PER_S] [SECONDS]` — how fast an
//! order's status change reaches its buyer's open SSE stream, and what an open stream costs,
//! on the real stack (Kafka, PostgreSQL, Redis).
//!
//! It starts `marketplace serve user` and `marketplace serve notification` as two processes in
//! fresh schemas, registers CONNECTIONS buyers (default 1,000) and opens one SSE stream per
//! buyer. Then it publishes `order.status.changed` events as the order service's relay does:
//! ORDERS_PER_S orders a second (default 100), each going through its six statuses 100 ms
//! apart, for SECONDS (default 20), each order's buyer drawn in turn. The latency of an update
//! is from the publication of its event to its arrival on the buyer's stream. The baseline is
//! the same run at a twentieth of the rate with ten streams, in the same command. Memory per
//! stream: the notification process's resident memory with every stream open and idle, minus
//! before any was open, over CONNECTIONS. Needs `ci/infra/up.sh`.
//!
//! Two more figures split the latency: publication → acknowledgement (the producer's
//! `acks=all` round trip), and publication → arrival at a bare consumer of the topic in this
//! process (Kafka's own share, the floor under the service's figure).

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use adapters::{KafkaConfig, KafkaEventLog};
use contracts::user::{user_service_client::UserServiceClient, LoginRequest, RegisterRequest};
use notification::client::SseStream;
use order::{OrderStatus, StatusChanged};
use platform::{
    outbox::to_record,
    ports::{
        Consumer, ConsumerConfig, EventLog, OutboxMessage, OutboxRow, Producer, ProducerConfig,
    },
};
use tokio::time::Instant;

/// Statuses each order goes through (the happy path, the first six of `ALL`), and the gap
/// between two.
const STATUSES: &[OrderStatus] = OrderStatus::ALL.split_at(6).0;
const STATUS_GAP: Duration = Duration::from_millis(100);

/// When each `(order, seq)` was published.
type Sent = Arc<Mutex<BTreeMap<(String, u64), Instant>>>;
/// Latencies measured, in microseconds.
type Seen = Arc<Mutex<Vec<u64>>>;

/// What one phase measures: publication → SSE event, → acknowledgement, → a bare consumer.
#[derive(Clone, Default)]
struct Seens {
    sse: Seen,
    acked: Seen,
    read: Seen,
}

impl Seens {
    fn clear(&self) {
        for s in [&self.sse, &self.acked, &self.read] {
            if let Ok(mut s) = s.lock() {
                s.clear();
            }
        }
    }
}

fn record_since(seen: &Seen, at: Instant) {
    if let Ok(mut seen) = seen.lock() {
        seen.push(at.elapsed().as_micros() as u64);
    }
}

/// The `(order, seq)` of an order status event or update body.
fn order_seq(body: &serde_json::Value, seq_field: &str) -> (String, u64) {
    (
        body["order_id"].as_str().unwrap_or_default().to_owned(),
        body[seq_field].as_u64().unwrap_or(u64::MAX),
    )
}

fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

struct Procs(Vec<Child>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn serve(binary: &str, service: &str, env: &[(&str, String)]) -> anyhow::Result<Child> {
    let mut c = Command::new(binary);
    c.args(["serve", service])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    Ok(c.spawn()?)
}

async fn wait_port(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{addr} never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Registers and logs in `n` buyers: (user id, access token).
async fn buyers(user_url: String, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let channel = tonic::transport::Endpoint::from_shared(user_url)?
        .connect()
        .await?;
    let run: String = format!("{:08x}", platform::ids::random_u128() as u32);
    let one = |i: usize| {
        let mut c = UserServiceClient::new(channel.clone());
        let email = format!("b{i}-{run}@bench.test");
        async move {
            let register = RegisterRequest {
                email: email.clone(),
                password: "bench password 1".into(),
                display_name: "Bench".into(),
            };
            c.register(platform::grpc::request(
                register,
                Some(&format!("reg-{email}")),
            ))
            .await?;
            let login = LoginRequest {
                email,
                password: "bench password 1".into(),
                client_address: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            };
            let s = c
                .login(platform::grpc::request(login, None))
                .await?
                .into_inner();
            Ok::<_, tonic::Status>((s.user_id, s.access_token))
        }
    };
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        for r in futures::future::join_all(chunk.iter().map(|i| one(*i))).await {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Follows one buyer's stream, recording each update's latency.
fn follow(mut stream: SseStream, sent: Sent, seen: Seen) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(e)) = stream.next().await {
            if e.event != "order.status" {
                continue;
            }
            let Some(body) = e.json().map(|j| j["body"].clone()) else {
                continue;
            };
            let key = order_seq(&body, "order_seq");
            if let Some(at) = sent.lock().ok().and_then(|s| s.get(&key).copied()) {
                record_since(&seen, at);
            }
        }
    })
}

/// Reads the status events as they come (a group of its own, starting at the end) and records
/// when each arrived.
fn read_bare(
    mut consumer: Box<dyn Consumer>,
    sent: Sent,
    seen: Seen,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(records) = consumer.poll(Duration::from_millis(500)).await {
            for r in records {
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&r.payload) else {
                    continue;
                };
                let key = order_seq(&event, "seq");
                if let Some(at) = sent.lock().ok().and_then(|s| s.get(&key).copied()) {
                    record_since(&seen, at);
                }
            }
        }
    })
}

/// Publishes one order's six status events, `STATUS_GAP` apart.
async fn one_order(producer: Arc<dyn Producer>, customer: String, sent: Sent, acked: Seen) {
    let order_id = platform::ids::uuid_v4().to_string();
    for (seq, status) in STATUSES.iter().enumerate() {
        let event = StatusChanged {
            event_id: format!("{order_id}:{seq}"),
            order_id: order_id.clone(),
            customer_id: customer.clone(),
            seq: seq as u32,
            status: *status,
            previous: seq.checked_sub(1).map(|p| STATUSES[p]),
            amount_minor: 990,
            currency: "RUB".into(),
        };
        let record = to_record(&OutboxRow {
            id: 0,
            message: OutboxMessage {
                event_id: event.event_id.clone(),
                topic: platform::topics::ORDER_STATUS_CHANGED.into(),
                key: order_id.clone(),
                payload: serde_json::to_value(&event).unwrap_or_default(),
                headers: vec![],
            },
            created_ms: 0,
        });
        let at = Instant::now();
        if let Ok(mut s) = sent.lock() {
            s.insert((order_id.clone(), seq as u64), at);
        }
        match producer.send(record).await {
            Ok(_) => record_since(&acked, at),
            Err(e) => eprintln!("publish failed: {e}"),
        }
        tokio::time::sleep(STATUS_GAP).await;
    }
}

struct Phase {
    updates: usize,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

/// The percentiles of `seen`.
fn percentiles(seen: &Seen) -> Phase {
    let mut v = seen.lock().map(|s| s.clone()).unwrap_or_default();
    v.sort_unstable();
    let at = |q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Phase {
        updates: v.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: v.last().copied().unwrap_or(0),
    }
}

/// Publishes `orders_per_s` orders a second for `seconds` to the first `streams` buyers, and
/// waits (bounded) until every update arrived.
async fn phase(
    producer: &Arc<dyn Producer>,
    buyers: &[(String, String)],
    streams: usize,
    orders_per_s: u32,
    seconds: u64,
    sent: &Sent,
    seens: &Seens,
) -> anyhow::Result<[Phase; 3]> {
    seens.clear();
    let total = u64::from(orders_per_s) * seconds;
    let gap = Duration::from_secs(1) / orders_per_s.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = gap * i as u32;
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let customer = buyers[i as usize % streams].0.clone();
        tasks.push(tokio::spawn(one_order(
            producer.clone(),
            customer,
            sent.clone(),
            seens.acked.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let expected = total as usize * STATUSES.len();
    let waited = Instant::now();
    let count = |s: &Seen| s.lock().map_or(0, |s| s.len());
    while count(&seens.sse) < expected || count(&seens.read) < expected {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(60),
            "only {} of {expected} updates arrived ({} at the bare consumer)",
            count(&seens.sse),
            count(&seens.read)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok([
        percentiles(&seens.sse),
        percentiles(&seens.acked),
        percentiles(&seens.read),
    ])
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench-notify MARKETPLACE_BINARY [CONNECTIONS] [ORDERS_PER_S] [SECONDS]";
    let binary = args
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!(usage))?;
    let connections: usize = args.get(1).map_or(Ok(1000), |v| v.parse())?;
    let orders_per_s: u32 = args.get(2).map_or(Ok(100), |v| v.parse())?;
    let seconds: u64 = args.get(3).map_or(Ok(20), |v| v.parse())?;
    anyhow::ensure!(
        connections >= 10 && orders_per_s >= 20,
        "{usage}: at least 10 connections and 20 orders/s"
    );

    let prefix = format!("bn{:08x}_", platform::ids::random_u128() as u32);
    let (user, grpc, http) = (free_addr()?, free_addr()?, free_addr()?);
    let env = vec![
        ("SCHEMA_PREFIX", prefix.clone()),
        ("USER_LISTEN", user.to_string()),
        ("USER_URLS", format!("http://{user}")),
        ("NOTIFICATION_LISTEN", grpc.to_string()),
        ("NOTIFICATION_HTTP_LISTEN", http.to_string()),
        ("USER_ARGON2_MEMORY_KIB", "8".into()),
        ("USER_ARGON2_ITERATIONS", "1".into()),
    ];
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP")
        .unwrap_or_else(|_| "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094".into());
    let events = KafkaEventLog::connect(KafkaConfig::new(bootstrap)).await?;
    events.ensure_listed_topics().await?;
    // The fresh groups start at the topics' end, not at their (shared, long) history.
    events
        .start_group_at_end(
            &format!("{prefix}{}", notification::GROUP),
            &[
                platform::topics::ORDER_STATUS_CHANGED,
                platform::topics::MODERATION_RESULTS,
            ],
        )
        .await?;
    let bare_group = format!("{prefix}bare");
    events
        .start_group_at_end(&bare_group, &[platform::topics::ORDER_STATUS_CHANGED])
        .await?;

    let mut procs = Procs(vec![serve(&binary, "user", &env)?]);
    wait_port(user).await?;
    procs.0.push(serve(&binary, "notification", &env)?);
    let notification_pid = procs.0[1].id();
    wait_port(http).await?;
    wait_port(grpc).await?;
    let buyers = buyers(format!("http://{user}"), connections).await?;
    eprintln!("{} buyers registered", buyers.len());

    let before_kib = rss_kib(notification_pid)?;
    let url = format!("http://{http}/v1/notifications/stream");
    let (sent, seens): (Sent, Seens) = Default::default();
    let mut followers = Vec::with_capacity(connections);
    for (_, token) in &buyers {
        // The service fetches the user service's keys once: 503 until then.
        let started = Instant::now();
        let stream = loop {
            match SseStream::open(&url, token, None, Duration::from_secs(10)).await {
                Ok(s) => break s,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => anyhow::bail!("a stream does not open: {e}"),
            }
        };
        followers.push(follow(stream, sent.clone(), seens.sse.clone()));
    }
    let bare = events
        .consumer(
            ConsumerConfig::new(bare_group),
            &[platform::topics::ORDER_STATUS_CHANGED],
        )
        .await?;
    followers.push(read_bare(bare, sent.clone(), seens.read.clone()));
    let open_kib = rss_kib(notification_pid)?;
    let producer: Arc<dyn Producer> = events.producer(ProducerConfig::default()).await?;

    // Warm-up: the consumer group settles (a rebalance after the service joined) before
    // anything is timed.
    phase(&producer, &buyers, 1, 1, 1, &sent, &seens).await?;
    let base_rate = (orders_per_s / 20).max(1);
    let baseline = phase(
        &producer,
        &buyers,
        10,
        base_rate,
        seconds.min(10),
        &sent,
        &seens,
    )
    .await?;
    let load = phase(
        &producer,
        &buyers,
        connections,
        orders_per_s,
        seconds,
        &sent,
        &seens,
    )
    .await?;
    let loaded_kib = rss_kib(notification_pid)?;

    println!("status change → SSE event, real stack, release build, one notification process");
    println!(
        "{:<44} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "run", "updates", "p50", "p90", "p99", "max"
    );
    let base_name = format!("baseline: {base_rate} orders/s, 10 streams");
    let load_name = format!("load: {orders_per_s} orders/s, {connections} streams");
    for (name, p) in [(&base_name, &baseline[0]), (&load_name, &load[0])] {
        println!(
            "{name:<44} {:>8} {:>9} {:>9} {:>9} {:>9}",
            p.updates,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        );
    }
    println!(
        "load / baseline: p50 {:.2}x, p99 {:.2}x (goal: load p99 <= 50 ms: {})",
        load[0].p50 as f64 / baseline[0].p50.max(1) as f64,
        load[0].p99 as f64 / baseline[0].p99.max(1) as f64,
        if load[0].p99 <= 50_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "the share of Kafka alone (publication → acks=all acknowledgement, → a bare consumer):"
    );
    for (name, p) in [
        (format!("{base_name}: acknowledged"), &baseline[1]),
        (format!("{base_name}: read"), &baseline[2]),
        (format!("{load_name}: acknowledged"), &load[1]),
        (format!("{load_name}: read"), &load[2]),
    ] {
        println!(
            "{name:<58} {:>9} {:>9} {:>9} {:>9}",
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        );
    }
    println!(
        "notification process RSS: {before_kib} KiB before, {open_kib} KiB with {connections} \
         idle streams ({:.1} KiB per stream), {loaded_kib} KiB after the load",
        (open_kib.saturating_sub(before_kib)) as f64 / connections as f64
    );
    for f in followers {
        f.abort();
    }
    drop(procs);
    Ok(())
}
