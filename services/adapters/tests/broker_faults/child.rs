//! A group member in a child process, so it can die the way a crashed service does: SIGKILL,
//! no `LeaveGroup`, no commit — the coordinator notices only when its session times out.
//! (Dropping an rdkafka consumer in this process would leave the group politely, and the
//! workspace forbids the `unsafe` a destroy-without-close would need.)
//!
//! The child is this test binary running [`mortal_consumer_process`] (an ignored test that
//! does nothing unless [`CHILD_ENV`] is set): it makes a consumer through the production
//! adapter and serves `poll` / `commit` requests, one JSON line each on stdin, answering one
//! line each on stdout prefixed by [`REPLY_PREFIX`] (libtest prints its own lines there too).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use conformance::broker_faults::{variant, MortalConsumer};
use platform::ports::{
    ConsumedRecord, Consumer, ConsumerConfig, EventLog, EventLogError, PartitionLag,
};
use serde_json::{json, Value};

use crate::servers::kafka;

/// Set (to the consumer's settings, as JSON) in the child's environment.
const CHILD_ENV: &str = "BROKER_FAULTS_CHILD_CONSUMER";

/// Marks the child's replies on stdout (anywhere in a line).
const REPLY_PREFIX: &str = "@@broker-faults-child ";

/// The child test's path, as libtest filters it.
const CHILD_TEST: &str = "child::mortal_consumer_process";

/// Bound on the child starting and joining the group, and on one request beyond its own
/// timeout.
const CHILD_REPLY_DEADLINE: Duration = Duration::from_secs(30);

/// The child's stdin and stdout, shared with the blocking task of the request in flight.
type Pipes = Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>;

/// A [`Consumer`] whose calls run in a child process.
pub struct ChildConsumer {
    /// `None` once dead.
    child: Option<Child>,
    pipes: Pipes,
}

impl ChildConsumer {
    /// Starts the child and waits until its consumer is subscribed.
    pub async fn spawn(
        config: &ConsumerConfig,
        topic: &str,
    ) -> Result<ChildConsumer, EventLogError> {
        let settings = json!({
            "topic": topic,
            "client_id": config.client_id,
            "group_id": config.group_id,
            "client_rack": config.client_rack,
            "enable_auto_commit": config.enable_auto_commit,
            "session_timeout_ms": u64::try_from(config.session_timeout.as_millis()).unwrap_or(u64::MAX),
        });
        let exe = std::env::current_exe()
            .map_err(|e| EventLogError::Fatal(format!("the test binary's path: {e}")))?;
        let mut child = Command::new(exe)
            .args([CHILD_TEST, "--exact", "--include-ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, settings.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| EventLogError::Fatal(format!("starting the consumer process: {e}")))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(EventLogError::Fatal("the child's pipes".into())),
        };
        let mut consumer = ChildConsumer {
            child: Some(child),
            pipes: Arc::new(Mutex::new((stdin, BufReader::new(stdout)))),
        };
        consumer.call(None, CHILD_REPLY_DEADLINE).await?;
        Ok(consumer)
    }

    /// Sends `request` (or nothing, to read the ready line) and waits for the reply.
    async fn call(
        &mut self,
        request: Option<Value>,
        limit: Duration,
    ) -> Result<Value, EventLogError> {
        if self.child.is_none() {
            return Err(EventLogError::Fatal("the consumer process is dead".into()));
        }
        let pipes = self.pipes.clone();
        let exchange = tokio::task::spawn_blocking(move || -> Result<Value, String> {
            let mut pipes = pipes.lock().unwrap_or_else(PoisonError::into_inner);
            let (stdin, stdout) = &mut *pipes;
            if let Some(request) = request {
                writeln!(stdin, "{request}").map_err(|e| format!("writing to the child: {e}"))?;
                stdin
                    .flush()
                    .map_err(|e| format!("writing to the child: {e}"))?;
            }
            let mut line = String::new();
            loop {
                line.clear();
                let n = stdout
                    .read_line(&mut line)
                    .map_err(|e| format!("reading from the child: {e}"))?;
                if n == 0 {
                    return Err("the child closed its stdout".into());
                }
                // libtest's "test child::… ... " may precede the first reply on its line.
                if let Some((_, reply)) = line.trim_end().split_once(REPLY_PREFIX) {
                    return serde_json::from_str(reply).map_err(|e| format!("reply {reply}: {e}"));
                }
            }
        });
        let reply = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| {
                EventLogError::Timeout(format!("the consumer process gave no reply in {limit:?}"))
            })?
            .map_err(|e| EventLogError::Fatal(format!("child i/o task: {e}")))?
            .map_err(EventLogError::Unavailable)?;
        match reply.get("err") {
            Some(err) => Err(error_from_json(err)),
            None => Ok(reply["ok"].clone()),
        }
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: the process ends without closing its consumer.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[async_trait]
impl Consumer for ChildConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, EventLogError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let reply = self
            .call(
                Some(json!({ "poll": timeout_ms })),
                timeout + CHILD_REPLY_DEADLINE,
            )
            .await?;
        reply
            .as_array()
            .map(|records| records.iter().map(record_from_json).collect())
            .ok_or_else(|| EventLogError::Fatal(format!("a poll reply that is no list: {reply}")))
    }

    async fn commit(&mut self, records: &[ConsumedRecord]) -> Result<(), EventLogError> {
        let records: Vec<Value> = records.iter().map(record_to_json).collect();
        self.call(Some(json!({ "commit": records })), CHILD_REPLY_DEADLINE)
            .await
            .map(drop)
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError> {
        let reply = self
            .call(Some(json!({ "lag": true })), CHILD_REPLY_DEADLINE)
            .await?;
        let lags = reply
            .as_array()
            .ok_or_else(|| EventLogError::Fatal(format!("a lag reply that is no list: {reply}")))?;
        Ok(lags
            .iter()
            .map(|l| PartitionLag {
                topic: l["topic"].as_str().unwrap_or_default().to_owned(),
                partition: l["partition"].as_i64().unwrap_or(-1) as i32,
                position: l["position"].as_i64().unwrap_or(-1),
                high_watermark: l["high_watermark"].as_i64().unwrap_or(-1),
            })
            .collect())
    }
}

#[async_trait]
impl MortalConsumer for ChildConsumer {
    async fn die(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let _ = child.kill();
            let _ = child.wait();
        })
        .await
        .expect("killing the consumer process");
    }
}

impl Drop for ChildConsumer {
    fn drop(&mut self) {
        self.kill_child();
    }
}

fn record_to_json(r: &ConsumedRecord) -> Value {
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "key": r.key,
        "payload": r.payload,
        "headers": r.headers,
    })
}

fn record_from_json(v: &Value) -> ConsumedRecord {
    ConsumedRecord {
        topic: v["topic"].as_str().unwrap_or_default().to_owned(),
        partition: v["partition"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(-1),
        offset: v["offset"].as_i64().unwrap_or(-1),
        key: v["key"].as_str().unwrap_or_default().to_owned(),
        payload: serde_json::from_value(v["payload"].clone()).unwrap_or_default(),
        headers: serde_json::from_value(v["headers"].clone()).unwrap_or_default(),
    }
}

fn error_to_json(e: &EventLogError) -> Value {
    json!({ "variant": variant(e), "detail": e.to_string() })
}

fn error_from_json(v: &Value) -> EventLogError {
    let detail = v["detail"].as_str().unwrap_or_default().to_owned();
    match v["variant"].as_str().unwrap_or_default() {
        "NotEnoughReplicas" => EventLogError::NotEnoughReplicas,
        "Timeout" => EventLogError::Timeout(detail),
        "Unavailable" => EventLogError::Unavailable(detail),
        "Fenced" => EventLogError::Fenced,
        "UnknownTopic" => EventLogError::UnknownTopic(detail),
        _ => EventLogError::Fatal(detail),
    }
}

fn reply(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{REPLY_PREFIX}{v}");
    let _ = out.flush();
}

/// The child's side: a consumer made through the production adapter, serving the parent's
/// requests until stdin closes (or the parent kills the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the consumer process of ChildConsumer; started by the group scenario"]
async fn mortal_consumer_process() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s: Value = serde_json::from_str(&settings).expect("consumer settings");
    let config = ConsumerConfig {
        client_id: s["client_id"].as_str().unwrap_or("marketplace").to_owned(),
        client_rack: s["client_rack"].as_str().map(str::to_owned),
        enable_auto_commit: s["enable_auto_commit"].as_bool().unwrap_or(false),
        session_timeout: Duration::from_millis(s["session_timeout_ms"].as_u64().unwrap_or(10_000)),
        ..ConsumerConfig::new(s["group_id"].as_str().expect("group_id"))
    };
    let topic = s["topic"].as_str().expect("topic").to_owned();
    let log = kafka().await;
    let mut consumer = match log.consumer(config, &[topic.as_str()]).await {
        Ok(c) => c,
        Err(e) => return reply(&json!({ "err": error_to_json(&e) })),
    };
    reply(&json!({ "ok": "ready" }));
    loop {
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map(|n| (n, line))
        })
        .await
        .expect("stdin task");
        let request: Value = match line {
            Ok((0, _)) | Err(_) => return,
            Ok((_, line)) => serde_json::from_str(&line).expect("a request"),
        };
        let answer = if request["lag"].as_bool() == Some(true) {
            consumer.lag().await.map(|lags| {
                Value::Array(
                    lags.iter()
                        .map(|l| {
                            json!({
                                "topic": l.topic,
                                "partition": l.partition,
                                "position": l.position,
                                "high_watermark": l.high_watermark,
                            })
                        })
                        .collect(),
                )
            })
        } else if let Some(ms) = request["poll"].as_u64() {
            consumer
                .poll(Duration::from_millis(ms))
                .await
                .map(|records| Value::Array(records.iter().map(record_to_json).collect()))
        } else {
            let records: Vec<ConsumedRecord> = request["commit"]
                .as_array()
                .map(|rs| rs.iter().map(record_from_json).collect())
                .unwrap_or_default();
            consumer.commit(&records).await.map(|()| Value::Null)
        };
        reply(&match answer {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "err": error_to_json(&e) }),
        });
    }
}
