//! The moderation service: a group of workers (`moderation-workers`) on `moderation.tasks`,
//! the seed's point-to-point queue. Each task is decided once in effect: the decision commits
//! with the task's inbox mark and the result's outbox row in one transaction, and offsets are
//! committed only after that. Results go to `moderation.results` (key = target id) for the
//! services that act on them. The moderator is a port: a deterministic rule-based one by
//! default.

pub mod store;

use std::sync::Arc;

use futures::future::BoxFuture;
use platform::{
    http::{HttpClient, HttpError},
    inbox::{run_consumer, Effect, EffectError},
    outbox::{to_record, OutboxSignal},
    ports::{ConsumedRecord, EventLog, OutboxMessage, OutboxRow, ProducerConfig, Store, Tx},
    retry::{retry, RetryPolicy},
    Infra, Shutdown,
};
use serde::{Deserialize, Serialize};

pub use store::{
    Decision, ModerationModel, ModerationQuery, ModerationSchema, ModerationWrite, DECISIONS,
};

/// The workers' consumer group.
pub const GROUP: &str = "moderation-workers";

/// What a report asks moderation to decide (the payload of a `moderation.tasks` record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationTask {
    /// The report's id: one task per report.
    pub task_id: String,
    /// `AD` or `USER`.
    pub target_kind: String,
    pub target_id: String,
    pub reporter_id: String,
    pub reason: String,
    pub comment: String,
    pub created_ms: i64,
}

/// A decision (the payload of a `moderation.results` record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationResult {
    /// `<decision id>`: consumers deduplicate on it.
    pub event_id: String,
    pub task_id: String,
    pub target_kind: String,
    pub target_id: String,
    /// `BAN` or `OK`.
    pub decision: String,
    pub reason: String,
    pub decided_ms: i64,
    /// Who reported it, whom the decision is announced to (empty in results published
    /// before it was added).
    #[serde(default)]
    pub reporter_id: String,
}

impl ModerationTask {
    /// The outbox message of this task (key = target id).
    pub fn message(&self) -> OutboxMessage {
        OutboxMessage {
            event_id: format!("task:{}", self.task_id),
            topic: platform::topics::MODERATION_TASKS.into(),
            key: self.target_id.clone(),
            payload: serde_json::to_value(self).unwrap_or_default(),
            headers: vec![],
        }
    }
}

impl ModerationResult {
    /// The result in `record`; a record that does not decode is poison.
    pub fn decode(record: &ConsumedRecord) -> Result<Self, EffectError> {
        serde_json::from_slice(&record.payload)
            .map_err(|e| EffectError::Poison(format!("moderation result does not decode: {e}")))
    }

    /// The result in `record` if it bans a target of `kind` (`AD` or `USER`), unless
    /// `ignore_bans` (the mutant `ban-not-enforced`).
    pub fn ban_of(
        record: &ConsumedRecord,
        kind: &str,
        ignore_bans: bool,
    ) -> Result<Option<Self>, EffectError> {
        let result = Self::decode(record)?;
        let ban = result.target_kind == kind && result.decision == "BAN" && !ignore_bans;
        Ok(ban.then_some(result))
    }

    /// The outbox message of this result (key = target id).
    pub fn message(&self) -> OutboxMessage {
        OutboxMessage {
            event_id: self.event_id.clone(),
            topic: platform::topics::MODERATION_RESULTS.into(),
            key: self.target_id.clone(),
            payload: serde_json::to_value(self).unwrap_or_default(),
            headers: vec![],
        }
    }
}

/// Why a moderator gave no decision.
#[derive(Debug, thiserror::Error)]
pub enum ModeratorError {
    /// Not now, and not because of this task (the provider cannot be reached): the task is
    /// read again later, as often as it takes.
    #[error("moderator unavailable: {0}")]
    Unavailable(String),
    /// The provider answered this task with failures (5xx, or too late) through the whole
    /// retry policy: an attempt that counts towards [`Tuning::task_attempts`].
    #[error("moderator failed on the task: {0}")]
    Failed(String),
    /// Never (the provider refuses the task): the task goes to the dead-letter topic.
    #[error("moderator refused the task: {0}")]
    Refused(String),
}

/// Decides tasks: `(decision, reason)`, the decision `BAN` or `OK`.
pub trait Moderator: Send + Sync {
    fn decide<'a>(
        &'a self,
        task: &'a ModerationTask,
    ) -> BoxFuture<'a, Result<(String, String), ModeratorError>>;
}

/// The rules: scams and prohibited goods are banned; so is a report whose comment says
/// "ban". Everything else is OK.
pub fn rule_decision(reason: &str, comment: &str) -> (String, String) {
    let comment = comment.to_lowercase();
    if matches!(reason, "scam" | "prohibited") {
        ("BAN".into(), format!("rule: {reason}"))
    } else if comment
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w == "ban")
    {
        ("BAN".into(), "rule: the reporter's evidence".into())
    } else {
        ("OK".into(), "rule: nothing against the rules".into())
    }
}

/// The default moderator: [`rule_decision`], in process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules;

impl Moderator for Rules {
    fn decide<'a>(
        &'a self,
        task: &'a ModerationTask,
    ) -> BoxFuture<'a, Result<(String, String), ModeratorError>> {
        Box::pin(async move { Ok(rule_decision(&task.reason, &task.comment)) })
    }
}

/// An external moderation provider over HTTP (`POST <url>/v1/moderate`), called through the
/// one retry helper: transient failures (no answer, 5xx, 429) are retried within the policy,
/// then the task waits for its next delivery; a 4xx refuses the task for good.
#[derive(Clone, Debug)]
pub struct Provider {
    pub url: String,
    pub http: HttpClient,
    pub policy: RetryPolicy,
}

#[derive(Serialize)]
struct ProviderRequest<'a> {
    task_id: &'a str,
    target_kind: &'a str,
    reason: &'a str,
    comment: &'a str,
}

#[derive(Deserialize)]
struct ProviderAnswer {
    decision: String,
    reason: String,
}

impl Moderator for Provider {
    fn decide<'a>(
        &'a self,
        task: &'a ModerationTask,
    ) -> BoxFuture<'a, Result<(String, String), ModeratorError>> {
        Box::pin(async move {
            let body = ProviderRequest {
                task_id: &task.task_id,
                target_kind: &task.target_kind,
                reason: &task.reason,
                comment: &task.comment,
            };
            let url = format!("{}/v1/moderate", self.url.trim_end_matches('/'));
            let answer = retry(
                &self.policy,
                "moderation provider",
                &Shutdown::never(),
                HttpError::is_transient,
                |_| self.http.post_json::<_, ProviderAnswer>(&url, &[], &body),
            )
            .await
            .map_err(|e| match e.into_inner() {
                Some(e) if !e.is_transient() => ModeratorError::Refused(e.to_string()),
                Some(e @ (HttpError::Connect { .. } | HttpError::CircuitOpen(_))) => {
                    ModeratorError::Unavailable(e.to_string())
                }
                Some(e) => ModeratorError::Failed(e.to_string()),
                None => ModeratorError::Failed("the retry deadline passed".into()),
            })?;
            if !DECISIONS.contains(&answer.decision.as_str()) {
                return Err(ModeratorError::Refused(format!(
                    "the provider answered {:?}",
                    answer.decision
                )));
            }
            Ok((answer.decision, answer.reason.chars().take(200).collect()))
        })
    }
}

/// Moderation settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The consumer group (normally [`GROUP`]; tests side by side use their own).
    pub group_id: String,
    /// Kafka `client.rack` of this instance.
    pub client_rack: Option<String>,
    /// Deliveries of one task that may fail (see [`ModeratorError::Failed`]) before it is
    /// dead-lettered.
    pub task_attempts: u32,
}

/// How the workers work, whoever decides.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Deliveries of one task that may fail before it goes to `moderation.tasks.dlq`.
    pub task_attempts: u32,
    /// Bound on one call to the external provider.
    pub provider_call: std::time::Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            task_attempts: 5,
            provider_call: std::time::Duration::from_secs(2),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// The mutant `results-without-outbox`: where a worker publishes its results itself, before
/// its decision commits (a dual write).
#[derive(Clone)]
struct DirectPublish {
    events: Arc<dyn EventLog>,
    producer: ProducerConfig,
}

impl DirectPublish {
    /// One attempt; the result is gone if it fails, and published although the decision may
    /// never commit.
    async fn publish(&self, message: OutboxMessage) {
        let record = to_record(&OutboxRow {
            id: 0,
            message,
            created_ms: 0,
        });
        let sent = async {
            let p = self.events.producer(self.producer.clone()).await?;
            p.send(record).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "direct publish failed; the result is lost");
        }
    }
}

fn effect(
    moderator: Arc<dyn Moderator>,
    worker: String,
    direct: Option<DirectPublish>,
) -> Effect<ModerationSchema> {
    Arc::new(
        move |record: ConsumedRecord, _store: Arc<dyn Store<ModerationSchema>>| {
            let (moderator, worker, direct) = (moderator.clone(), worker.clone(), direct.clone());
            Box::pin(async move {
                let task: ModerationTask =
                    serde_json::from_slice(&record.payload).map_err(|e| {
                        EffectError::Poison(format!("moderation task does not decode: {e}"))
                    })?;
                let (decision, reason) = moderator.decide(&task).await.map_err(|e| match e {
                    ModeratorError::Refused(why) => EffectError::Poison(why),
                    e @ ModeratorError::Failed(_) => EffectError::Failed(e.into()),
                    e @ ModeratorError::Unavailable(_) => EffectError::Retry(e.into()),
                })?;
                let decided = Decision {
                    decision_id: platform::ids::uuid_v4().to_string(),
                    task_id: task.task_id.clone(),
                    target_kind: task.target_kind.clone(),
                    target_id: task.target_id.clone(),
                    decision,
                    reason,
                    worker,
                    decided_ms: now_ms(),
                };
                let result = ModerationResult {
                    event_id: format!("decision:{}", decided.decision_id),
                    task_id: decided.task_id.clone(),
                    target_kind: decided.target_kind.clone(),
                    target_id: decided.target_id.clone(),
                    decision: decided.decision.clone(),
                    reason: decided.reason.clone(),
                    decided_ms: decided.decided_ms,
                    reporter_id: task.reporter_id.clone(),
                };
                let tx = Tx::new().write(ModerationWrite::Decide(decided));
                if let Some(direct) = direct {
                    direct.publish(result.message()).await;
                    return Ok(Some(tx));
                }
                Ok(Some(tx.emit(result.message())))
            })
        },
    )
}

/// Runs one moderation worker (its consumer and its outbox relay) until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<ModerationSchema>,
    moderator: Arc<dyn Moderator>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let outbox = OutboxSignal::default();
    let relay = infra.spawn_relay(outbox.clone(), shutdown.clone());
    let settings = platform::inbox::ConsumerSettings {
        attempts_max: Some(config.task_attempts),
        // A decision costs a provider call: a task decided before is skipped by a lookup.
        lookup_first: true,
        ..infra.consumer_settings(
            &config.group_id,
            config.client_rack.clone(),
            &[platform::topics::MODERATION_TASKS],
        )
    };
    tracing::info!(worker = %infra.instance, "moderation worker up, consuming {}", platform::topics::MODERATION_TASKS);
    run_consumer(
        infra.store.clone(),
        infra.events.clone(),
        settings,
        effect(
            moderator,
            infra.instance.clone(),
            infra.mutants.results_without_outbox.then(|| DirectPublish {
                events: infra.events.clone(),
                producer: infra.producer.clone(),
            }),
        ),
        shutdown.clone(),
    )
    .await;
    let _ = relay.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A provider that answers every request with `status` and `body`; its URL.
    async fn provider_answering(status: &'static str, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Read the whole request (headers, then the body its length names).
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        url
    }

    fn provider(url: String) -> Provider {
        Provider {
            url,
            http: HttpClient::new(Duration::from_secs(2)),
            policy: RetryPolicy {
                delay_initial: Duration::from_millis(1),
                delay_max: Duration::from_millis(1),
                attempts_max: 2,
                deadline: Duration::from_secs(5),
                retries: None,
            },
        }
    }

    fn task() -> ModerationTask {
        ModerationTask {
            task_id: "t1".into(),
            target_kind: "AD".into(),
            target_id: "a1".into(),
            reporter_id: "u1".into(),
            reason: "spam".into(),
            comment: String::new(),
            created_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_provider_answer_is_the_decision() {
        let url = provider_answering("200 OK", r#"{"decision":"BAN","reason":"looks bad"}"#).await;
        let got = provider(url).decide(&task()).await.expect("decided");
        assert_eq!(got, ("BAN".to_owned(), "looks bad".to_owned()));
    }

    #[tokio::test]
    async fn server_errors_on_the_task_are_a_failed_attempt_that_counts() {
        let url = provider_answering("503 Service Unavailable", "{}").await;
        let got = provider(url).decide(&task()).await;
        assert!(matches!(got, Err(ModeratorError::Failed(_))), "{got:?}");
    }

    #[tokio::test]
    async fn a_provider_nobody_answers_for_is_unavailable_and_counts_for_nothing() {
        // A port that was just free: connections are refused.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let got = provider(url).decide(&task()).await;
        assert!(
            matches!(got, Err(ModeratorError::Unavailable(_))),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_or_an_unknown_decision_is_final() {
        for (status, body) in [
            ("400 Bad Request", "{}"),
            ("200 OK", r#"{"decision":"MAYBE","reason":"?"}"#),
        ] {
            let url = provider_answering(status, body).await;
            let got = provider(url).decide(&task()).await;
            assert!(
                matches!(got, Err(ModeratorError::Refused(_))),
                "{status}: {got:?}"
            );
        }
    }
}
