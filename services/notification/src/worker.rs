//! The worker that sends queued e-mail, SMS and push messages through the messaging
//! provider.
//!
//! A message is claimed (one instance works on it at a time), sent with the idempotency key
//! `notify-<key>` (so a send whose answer was lost and is retried delivers once), with the
//! one retry helper for quick retries; a provider still failing puts the message back with a
//! growing delay (persisted, so a restart keeps it). A refusal (4xx) fails it for good.

use std::time::Duration;

use platform::{
    http::{HttpClient, HttpError},
    ports::{Claimed, StoreError, Tx},
    retry::{retry, RetryError, RetryPolicy},
    worker::{run_rounds, Round},
    Shutdown,
};
use serde::{Deserialize, Serialize};

use crate::{
    now_ms,
    store::{read_outgoing, Outgoing, OUTGOING},
    NotificationWrite, WorkerCtx,
};

/// Messages handled per round.
const BATCH_MAX: usize = 256;
/// Bound on a stored reason.
const REASON_CHARS_MAX: usize = 512;

/// The provider's wire format.
#[derive(Serialize)]
struct MessageBody<'a> {
    channel: &'a str,
    to: &'a str,
    subject: &'a str,
    text: &'a str,
    reference: &'a str,
}
#[derive(Deserialize)]
struct MessageAnswer {
    message_id: String,
}

/// Quick retries within one round.
fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts_max: 3,
        deadline: Duration::from_secs(10),
        ..RetryPolicy::rpc()
    }
}

/// The wait before the next round of tries after `failures` failed rounds.
fn backoff(failures: u32) -> Duration {
    RetryPolicy::forever(Duration::from_millis(500), Duration::from_secs(30)).delay(failures)
}

pub(crate) async fn run(ctx: WorkerCtx, shutdown: Shutdown) {
    let client = HttpClient::new(ctx.provider_call)
        .with_breaker(ctx.provider.clone())
        .observed(ctx.metrics.clone(), "messaging provider");
    let (poll, wake) = (ctx.poll, ctx.work.clone());
    let stop = shutdown.clone();
    run_rounds("notification", poll, wake, shutdown, || async {
        round(&ctx, &client, &stop).await.map(|()| Round::Idle)
    })
    .await;
}

async fn round(ctx: &WorkerCtx, client: &HttpClient, shutdown: &Shutdown) -> anyhow::Result<()> {
    let claimed = ctx.liveness.work_items(OUTGOING, BATCH_MAX).await?;
    let results =
        platform::claims::each_concurrently(claimed, |c| work_on(ctx, client, shutdown, c)).await;
    results
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

fn clip(s: &str) -> String {
    s.chars().take(REASON_CHARS_MAX).collect()
}

async fn work_on(
    ctx: &WorkerCtx,
    client: &HttpClient,
    shutdown: &Shutdown,
    c: Claimed,
) -> anyhow::Result<()> {
    let store = &*ctx.store;
    let Some(v) = read_outgoing(store, &c.key).await? else {
        return Ok(());
    };
    let o = v.value;
    if !o.is_pending() || o.next_attempt_ms > now_ms() {
        return Ok(());
    }
    let key = format!("notify-{}", o.key);
    let mut calls = 0i32;
    // The provider calls are a span of the trace of the Notify that queued the message.
    let trace = if ctx.drops_trace {
        None // the mutant message-drops-trace: a trace of the worker's own
    } else {
        platform::trace::TraceContext::from_stored(&o.trace)
    };
    let policy = RetryPolicy {
        retries: client.retries(),
        ..quick()
    };
    let sending = retry(
        &policy,
        "send message",
        shutdown,
        HttpError::is_transient,
        |_| {
            calls += 1;
            let key = if ctx.without_idempotency_key {
                platform::ids::uuid_v4().to_string() // the mutant message-without-idempotency-key
            } else {
                key.clone()
            };
            let body = MessageBody {
                channel: &o.channel,
                to: &o.recipient,
                subject: &o.subject,
                text: &o.body,
                reference: &o.key,
            };
            let url = format!("{}/v1/messages", ctx.provider_url);
            async move {
                client
                    .post_json::<_, MessageAnswer>(&url, &[("idempotency-key", &key)], &body)
                    .await
            }
        },
    );
    let sent = platform::trace::span("notification.send", trace, sending, |r| r.is_ok()).await;
    let now = now_ms();
    let attempts = o.attempts.saturating_add(calls);
    let next = match sent {
        Ok(answer) => Outgoing {
            status: "SENT".into(),
            provider_id: clip(&answer.message_id),
            reason: String::new(),
            attempts,
            updated_ms: now,
            ..o
        },
        Err(RetryError::Permanent(e)) => Outgoing {
            status: "FAILED".into(),
            reason: clip(&format!("the provider refused: {e}")),
            attempts,
            updated_ms: now,
            ..o
        },
        Err(RetryError::Cancelled) => return Ok(()),
        Err(e) => {
            let rounds = u32::try_from(attempts).unwrap_or(u32::MAX) / quick().attempts_max;
            let wait = i64::try_from(backoff(rounds.max(1)).as_millis()).unwrap_or(i64::MAX);
            Outgoing {
                reason: clip(&format!("will retry: {e}")),
                attempts,
                next_attempt_ms: now.saturating_add(wait),
                updated_ms: now,
                ..o
            }
        }
    };
    let tx = ctx.liveness.fence(Tx::new(), OUTGOING, &c.key, c.token);
    let tx = tx.write(NotificationWrite::Settle {
        outgoing: next,
        version: v.version,
    });
    match store.commit(tx).await {
        // Lost to another writer (the claim moved): it re-reads the message.
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
