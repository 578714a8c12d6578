//! The notification service: live updates for users over SSE (and WebSocket), from Kafka
//! events, without gaps.
//!
//! - **Sources.** A consumer group (`notification`) on `order.status.changed` and
//!   `moderation.results` turns each status change into an update for the order's buyer,
//!   and each moderation decision into one for the user who reported.
//! - **The log.** Each update is appended to its recipient's feed in PostgreSQL with the next
//!   sequence number, in the same transaction as the event's inbox mark: an event redelivered
//!   after a crash or a rebalance adds nothing.
//! - **Fan-out.** After a commit, the instance wakes its own sessions of that recipient and
//!   publishes a hint `recipient seq origin` on Redis ([`HINTS_CHANNEL`]); every other
//!   instance wakes its sessions of the recipient on a hint (its own hints it skips: it woke
//!   them at the commit). Hints are at most once and carry no data: a session
//!   always reads the log (see [`session`]), so a lost hint delays an update, never loses it.
//! - **Clients** connect to any instance with an access token (the user service's keys, as
//!   at the gateway) and resume with `epoch:seq`.

pub mod api;
pub mod client;
pub mod http;
pub mod session;
pub mod store;
pub mod templates;
mod worker;
pub mod ws;

use std::sync::Arc;

use futures::StreamExt;
use order::domain::StatusChanged;
use platform::{
    changes::Changes,
    grpc::LazyChannel,
    inbox::{Effect, EffectError},
    ports::{ConsumedRecord, Hints, Store, Tx},
    retry::RetryPolicy,
    store::Observed,
    Infra, Shutdown,
};

pub use session::{CloseWhy, Filter, Frame, Limits, Position, Session};
pub use store::{
    Feed, FeedPage, NotificationAnswer, NotificationModel, NotificationQuery, NotificationSchema,
    NotificationWrite, Outgoing, Update, BODY_BYTES_MAX, CHANNELS, KINDS, OUTGOING,
};

/// The consumer group of the event topics.
pub const GROUP: &str = "notification";
/// The Redis channel of hints `recipient seq`.
pub const HINTS_CHANNEL: &str = "notification.hints";
/// Hints waiting to be published; more are dropped (they are at most once anyway).
const HINTS_QUEUED_MAX: usize = 4096;

/// Notification service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the gRPC trigger API listens.
    pub listen: std::net::SocketAddr,
    /// Base URL of the messaging provider (e-mail, SMS, push).
    pub provider_url: String,
    /// Bound on one provider call.
    pub provider_call: std::time::Duration,
    /// How often the worker looks for messages to send when nothing wakes it.
    pub worker_poll: std::time::Duration,
    /// URLs of the user service, whose public keys check access tokens.
    pub user_url: String,
    /// The consumer group (normally [`GROUP`]).
    pub group_id: String,
    pub limits: Limits,
    /// TLS for the SSE and WebSocket endpoints browsers reach (the edge); `None`: plain.
    pub edge_tls: Option<std::sync::Arc<platform::tls::Tls>>,
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// The text a buyer reads for an order status.
pub fn status_text(status: &str) -> &'static str {
    match status {
        "CREATED" => "Your order is placed.",
        "PAYMENT_PENDING" => "We are taking your payment.",
        "PAID" => "Payment received.",
        "SHIPPING" => "We are handing your order to the courier.",
        "SHIPPED" => "Your order is on its way.",
        "DELIVERED" => "Your order is delivered.",
        "PAYMENT_FAILED" => "The payment failed; the order is cancelled.",
        "DELIVERY_FAILED" => "The delivery failed; you will be refunded.",
        "REFUNDING" => "We are refunding your payment.",
        "CANCELLED" => "The order is cancelled.",
        "CANCELLING_DELIVERY" => "The delivery is late; we asked the courier about it.",
        _ => "Your order changed.",
    }
}

/// The update an order status event makes, for its buyer (`None`: an event without one).
pub fn order_update(event: &StatusChanged) -> Option<(String, String, String)> {
    if event.customer_id.is_empty() {
        return None;
    }
    let status = event.status.as_str();
    let body = serde_json::json!({
        "order_id": event.order_id,
        "order_seq": event.seq,
        "status": status,
        "previous": event.previous.map(|p| p.as_str()),
        "text": status_text(status),
    });
    Some((
        event.customer_id.clone(),
        event.order_id.clone(),
        body.to_string(),
    ))
}

/// Updates a feed keeps: older ones are trimmed as new ones are appended, and a client
/// resuming from before the oldest kept gets a reset.
pub const FEED_KEEP: i64 = 1000;

/// Appends an update for `recipient` at the end of its feed (opening the feed, with a new
/// epoch, on its first update), keeping the last [`FEED_KEEP`]. A concurrent append makes
/// the commit conflict; the inbox loop then runs the effect again, which reads the new end.
pub async fn append(
    store: &dyn Store<NotificationSchema>,
    recipient: &str,
    kind: &str,
    subject: &str,
    body: String,
) -> Result<Tx<NotificationWrite>, EffectError> {
    append_keeping(store, recipient, kind, subject, body, FEED_KEEP).await
}

/// [`append`], keeping the last `keep` updates of the feed.
pub async fn append_keeping(
    store: &dyn Store<NotificationSchema>,
    recipient: &str,
    kind: &str,
    subject: &str,
    body: String,
    keep: i64,
) -> Result<Tx<NotificationWrite>, EffectError> {
    if !(1..=64).contains(&recipient.chars().count()) || subject.chars().count() > 64 {
        return Err(EffectError::Poison(format!(
            "an update for {recipient:?} about {subject:?}: a recipient is 1 to 64 characters, \
             a subject at most 64"
        )));
    }
    if body.len() > BODY_BYTES_MAX {
        return Err(EffectError::Poison(format!(
            "an update of {} bytes; at most {BODY_BYTES_MAX}",
            body.len()
        )));
    }
    Ok(append_tx(store, recipient, kind, subject, body, keep)
        .await?
        .0)
}

/// The transaction appending a checked update at the end of `recipient`'s feed, with the
/// feed's epoch and the update's seq.
pub(crate) async fn append_tx(
    store: &dyn Store<NotificationSchema>,
    recipient: &str,
    kind: &str,
    subject: &str,
    body: String,
    keep: i64,
) -> Result<(Tx<NotificationWrite>, String, i64), platform::ports::StoreError> {
    let head = store::read_feed(store, recipient, i64::MAX, 0).await?;
    let now = now_ms();
    let mut tx = Tx::new();
    let epoch = match head.epoch {
        Some(e) => e,
        None => {
            let epoch = format!("{:016x}", platform::ids::random_u128() as u64);
            tx = tx.write(NotificationWrite::Open(Feed {
                recipient: recipient.into(),
                epoch: epoch.clone(),
                created_ms: now,
            }));
            epoch
        }
    };
    let seq = head.last_seq + 1;
    let tx = tx.write(NotificationWrite::Append(Update {
        recipient: recipient.into(),
        seq,
        kind: kind.into(),
        subject: subject.into(),
        body,
        created_ms: now,
    }));
    let tx = if seq > keep && head.first_seq <= seq - keep {
        tx.write(NotificationWrite::Trim {
            recipient: recipient.into(),
            keep_from: seq - keep + 1,
        })
    } else {
        tx
    };
    Ok((tx, epoch, seq))
}

/// The update a moderation decision makes, for its reporter (`None`: a result without one).
pub fn moderation_update(
    result: &moderation::ModerationResult,
) -> Option<(String, String, String)> {
    if result.reporter_id.is_empty() {
        return None;
    }
    let text = match result.decision.as_str() {
        "BAN" => "Thank you: what you reported was removed.",
        _ => "Thank you: we looked at your report and found nothing against the rules.",
    };
    let body = serde_json::json!({
        "report_id": result.task_id,
        "target_kind": result.target_kind,
        "target_id": result.target_id,
        "decision": result.decision,
        "text": text,
    });
    Some((
        result.reporter_id.clone(),
        result.task_id.clone(),
        body.to_string(),
    ))
}

/// `order.status.changed` → an update for the order's buyer; `moderation.results` → one for
/// the reporter.
fn effect() -> Effect<NotificationSchema> {
    Arc::new(
        |record: ConsumedRecord, store: Arc<dyn Store<NotificationSchema>>| {
            Box::pin(async move {
                if record.topic == platform::topics::MODERATION_RESULTS {
                    let result = moderation::ModerationResult::decode(&record)?;
                    let Some((recipient, subject, body)) = moderation_update(&result) else {
                        return Ok(None);
                    };
                    return append(&*store, &recipient, "moderation.result", &subject, body)
                        .await
                        .map(Some);
                }
                let event: StatusChanged =
                    serde_json::from_slice(&record.payload).map_err(|e| {
                        EffectError::Poison(format!("order status event does not decode: {e}"))
                    })?;
                let Some((recipient, subject, body)) = order_update(&event) else {
                    return Ok(None);
                };
                append(&*store, &recipient, "order.status", &subject, body)
                    .await
                    .map(Some)
            })
        },
    )
}

/// What the sending worker works with.
#[derive(Clone)]
pub(crate) struct WorkerCtx {
    pub store: Arc<dyn Store<NotificationSchema>>,
    pub liveness: Arc<platform::claims::Liveness>,
    pub work: Arc<tokio::sync::Notify>,
    pub provider_url: String,
    pub provider_call: std::time::Duration,
    pub poll: std::time::Duration,
    /// The mutant `message-without-idempotency-key`.
    pub without_idempotency_key: bool,
    /// The mutant `message-drops-trace`.
    pub drops_trace: bool,
    /// The messaging provider's circuit breaker.
    pub provider: Arc<platform::breaker::Breaker>,
    /// Where the provider calls are counted.
    pub metrics: Arc<platform::metrics::Registry>,
}

/// The instance's fan-out: wakes its sessions after its own commits and on hints from other
/// instances, and publishes hints of its own commits.
#[derive(Clone)]
pub struct FanOut {
    pub changes: Changes,
    queue: tokio::sync::mpsc::Sender<String>,
    /// This fan-out's name in its hints, drawn at start.
    origin: String,
    /// The mutant `notify-without-hints`.
    without_hints: bool,
}

impl FanOut {
    /// Starts publishing to and listening on `hints` until `shutdown`.
    pub fn start(hints: Arc<dyn Hints>, shutdown: Shutdown) -> Self {
        let changes = Changes::default();
        let (queue, outgoing) = tokio::sync::mpsc::channel(HINTS_QUEUED_MAX);
        let origin = format!("{:016x}", platform::ids::random_u128() as u64);
        tokio::spawn(publish_hints(hints.clone(), outgoing, shutdown.clone()));
        tokio::spawn(listen_to_hints(
            hints,
            changes.clone(),
            origin.clone(),
            shutdown,
        ));
        FanOut {
            changes,
            queue,
            origin,
            without_hints: false,
        }
    }

    /// The mutant `notify-without-hints`: commits wake this instance's sessions only.
    pub fn without_hints(mut self) -> Self {
        self.without_hints = true;
        self
    }

    /// Announces the updates `tx` committed.
    pub fn committed(&self, tx: &Tx<NotificationWrite>) {
        for w in &tx.writes {
            if let NotificationWrite::Append(u) = w {
                self.changes.publish(&u.recipient);
                // Full: dropped; the other instances' sessions find it at their next check.
                if self.without_hints {
                    continue; // the mutant notify-without-hints
                }
                let hint = format!("{} {} {}", u.recipient, u.seq, self.origin);
                let _ = self.queue.try_send(hint);
            }
        }
    }

    /// `store`, announcing what it commits.
    pub fn observe(
        &self,
        store: Arc<dyn Store<NotificationSchema>>,
    ) -> Arc<dyn Store<NotificationSchema>> {
        let me = self.clone();
        Arc::new(Observed::new(store, Arc::new(move |tx| me.committed(tx))))
    }
}

async fn publish_hints(
    hints: Arc<dyn Hints>,
    mut outgoing: tokio::sync::mpsc::Receiver<String>,
    shutdown: Shutdown,
) {
    loop {
        let hint = tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            h = outgoing.recv() => match h { Some(h) => h, None => return },
        };
        if let Err(e) = hints.publish(HINTS_CHANNEL, &hint).await {
            tracing::debug!(error = %e, "hint not published");
        }
    }
}

/// Wakes the sessions a hint names; after each (re)subscription wakes every session, since
/// hints may have been missed while unsubscribed.
async fn listen_to_hints(
    hints: Arc<dyn Hints>,
    changes: Changes,
    origin: String,
    shutdown: Shutdown,
) {
    let backoff = RetryPolicy::forever(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(5),
    );
    let mut failures = 0u32;
    while !shutdown.is_requested() {
        let mut stream = match hints.subscribe(HINTS_CHANNEL).await {
            Ok(s) => {
                failures = 0;
                changes.publish_all();
                s
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot subscribe to hints yet");
                failures += 1;
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(backoff.delay(failures)) => {}
                }
                continue;
            }
        };
        loop {
            let hint = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                h = stream.next() => h,
            };
            let Some(hint) = hint else { break };
            let mut parts = hint.split(' ');
            let (recipient, from) = (parts.next(), parts.nth(1));
            if let (Some(recipient), false) = (recipient, from == Some(origin.as_str())) {
                changes.publish(recipient);
            }
        }
        tracing::debug!("hint subscription lost; subscribing again");
    }
}

/// Runs the notification service (its consumer, fan-out, sending worker, gRPC API and
/// HTTP endpoints) until `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<NotificationSchema>,
    hints: Arc<dyn Hints>,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let fan_out = FanOut::start(hints, shutdown.clone());
    let fan_out = if infra.mutants.notify_without_hints {
        fan_out.without_hints()
    } else {
        fan_out
    };
    let infra = Infra {
        store: fan_out.observe(infra.store.clone()),
        ..infra
    };
    // Partitions side by side: two partitions' records meet only in a buyer with orders in
    // both, whose appends then conflict and are run again. No `client.rack`: live updates
    // read from partition leaders, because a follower learns of new records (its high
    // watermark) only at its next fetch from the leader, up to `replica.fetch.wait.max.ms`
    // (500 ms) later when traffic is light (`ci/bench-notify` measured it).
    let consuming = infra.spawn_consumer(
        platform::inbox::ConsumerSettings {
            lanes: platform::inbox::Lanes::ByPartition,
            ..infra.consumer_settings(
                &config.group_id,
                None,
                &[
                    platform::topics::ORDER_STATUS_CHANGED,
                    platform::topics::MODERATION_RESULTS,
                ],
            )
        },
        effect(),
        shutdown.clone(),
    );
    let keys = Arc::new(auth::cache::KeyCache::new(auth::cache::from_user_service(
        Arc::new(
            LazyChannel::new(&config.user_url)?
                .secured(infra.tls.clone())
                .observed(&infra.metrics, "user"),
        ),
    )));
    let fresh = tokio::spawn(keys.clone().keep_fresh(shutdown.clone().into_wait()));
    let liveness = platform::claims::Liveness::of(&infra);
    let keep_alive = tokio::spawn(liveness.clone().keep(shutdown.clone()));
    let work = Arc::new(tokio::sync::Notify::new());
    let worker = tokio::spawn(worker::run(
        WorkerCtx {
            store: infra.store.clone(),
            liveness,
            work: work.clone(),
            provider_url: config.provider_url.clone(),
            provider_call: config.provider_call,
            poll: config.worker_poll,
            without_idempotency_key: infra.mutants.message_without_idempotency_key,
            drops_trace: infra.mutants.message_drops_trace,
            provider: {
                let b = platform::breaker::Breaker::shared("messaging provider");
                infra.metrics.watch_breaker(b.clone());
                b
            },
            metrics: infra.metrics.clone(),
        },
        shutdown.clone(),
    ));
    let tls = infra.tls.clone();
    let grpc = platform::grpc::serve(
        tonic::transport::Server::builder()
        .layer(platform::grpc::ServerMetricsLayer::new(
            infra.metrics.clone(),
        ))
        .add_service(
            contracts::notification::notification_service_server::NotificationServiceServer::new(
                api::NotificationApi {
                    store: infra.store.clone(),
                    work,
                },
            ),
        ),
        config.listen,
        tls,
        shutdown.clone(),
    );
    let router = platform::http::observed(
        http::router(http::State {
            store: infra.store.clone(),
            changes: fan_out.changes.clone(),
            keys,
            limits: config.limits,
            shutdown: shutdown.clone(),
            mutants: infra.mutants,
        }),
        infra.metrics.clone(),
    );
    tracing::info!(
        http = ?listener.local_addr().ok(),
        grpc = %config.listen,
        "notification service up"
    );
    let (served, ()) = tokio::join!(
        grpc,
        platform::http::serve_with(listener, router, config.edge_tls.clone(), shutdown)
    );
    let _ = consuming.await;
    let _ = fresh.await;
    let _ = worker.await;
    let _ = keep_alive.await;
    served?;
    Ok(())
}
