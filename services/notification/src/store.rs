//! The notification service's typed store: one log of user-facing updates per recipient.
//! SQL: `migrations/notification/`; Postgres twin: `adapters::postgres::schemas::notification`.
//!
//! Each update has a per-recipient sequence number, 1, 2, 3, … without gaps: an append
//! takes `last + 1` and conflicts when another append took it first (the effect then runs
//! again). The feed's epoch is drawn when its first update is written and changes only if
//! the log is ever reset (its feed row recreated): a client's resume point `epoch:seq` from
//! another epoch means nothing, so the client is told to reload. Retention trims old updates
//! but never the last one, so `last_seq` never goes back and a number is never reused.
//!
//! A second table holds the messages callers asked for through the gRPC `Notify`
//! ([`Outgoing`]), by idempotency key: the worker sends the pending ones to the provider.

use std::collections::BTreeMap;

use platform::ports::{Schema, Store, StoreError, Versioned, WorkMark};
use serde::{Deserialize, Serialize};

/// Bound on one update's body (JSON text), in bytes: the largest message a client gets.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// The kinds of update.
pub const KINDS: [&str; 3] = ["order.status", "moderation.result", "notice"];

/// Work kind of messages the worker still has to send.
pub const OUTGOING: &str = "outgoing";
/// The channels of a message: three through the provider, one into the user's feed.
pub const CHANNELS: [&str; 4] = ["email", "sms", "push", "in_app"];
/// A message's delivery statuses.
pub const DELIVERY_STATUSES: [&str; 3] = ["PENDING", "SENT", "FAILED"];
/// Bound on an idempotency key.
pub const KEY_BYTES_MAX: usize = 128;
/// Bound on a request's canonical text (recipient, channel, template, parameters).
pub const REQUEST_BYTES_MAX: usize = 24 * 1024;

/// A message a caller asked for, by its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub key: String,
    pub recipient: String,
    /// One of [`CHANNELS`].
    pub channel: String,
    pub template: String,
    /// The request as canonical JSON: a repeated key must come with the same request.
    pub request: String,
    /// The rendered subject (may be empty) and body.
    pub subject: String,
    pub body: String,
    /// One of [`DELIVERY_STATUSES`].
    pub status: String,
    /// Calls made to the provider.
    pub attempts: i32,
    /// Why it failed, or the last transient error.
    pub reason: String,
    /// The provider's message id (in-app: `epoch:seq`).
    pub provider_id: String,
    /// No provider call before this time (ms since the epoch): the retry backoff.
    pub next_attempt_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The trace context of the Notify that queued it ([`platform::trace`], stored form):
    /// the worker's provider calls for it run in that trace.
    #[serde(default)]
    pub trace: String,
}

impl Outgoing {
    /// Whether the worker still has to send it.
    pub fn is_pending(&self) -> bool {
        self.status == "PENDING"
    }
}

/// A recipient's feed: its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub recipient: String,
    pub epoch: String,
    pub created_ms: i64,
}

/// One update in a recipient's feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub recipient: String,
    /// 1, 2, 3, … per recipient.
    pub seq: i64,
    /// One of [`KINDS`].
    pub kind: String,
    /// What it is about (an order id, a report id), for filters; may be empty.
    pub subject: String,
    /// JSON text, at most [`BODY_BYTES_MAX`] bytes.
    pub body: String,
    pub created_ms: i64,
}

/// A write of the notification store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationWrite {
    /// Opens a feed with its epoch; nothing (and no conflict) if it is open already.
    Open(Feed),
    /// Appends an update; conflicts when its `(recipient, seq)` is taken.
    Append(Update),
    /// Forgets `recipient`'s updates before `keep_from`, except its last one.
    Trim { recipient: String, keep_from: i64 },
    /// A new message; conflicts when its key is taken.
    Queue(Outgoing),
    /// The message at `version`, replaced; conflicts if it is at another version.
    Settle { outgoing: Outgoing, version: i64 },
}

/// A read of the notification store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationQuery {
    /// The feed's state and its first `limit` updates after seq `after`.
    Feed {
        recipient: String,
        after: i64,
        limit: u32,
    },
    /// The message with idempotency key `key`.
    Outgoing { key: String },
}

/// What a read of the notification store answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationAnswer {
    Feed(FeedPage),
    Outgoing(Option<Box<Versioned<Outgoing>>>),
}

/// `recipient`'s feed: its state and its first `limit` updates after `after`.
pub async fn read_feed(
    store: &dyn Store<NotificationSchema>,
    recipient: &str,
    after: i64,
    limit: u32,
) -> Result<FeedPage, StoreError> {
    let query = NotificationQuery::Feed {
        recipient: recipient.to_owned(),
        after,
        limit,
    };
    match store.query(query).await? {
        NotificationAnswer::Feed(page) => Ok(page),
        other => Err(StoreError::Fatal(format!("a feed read answered {other:?}"))),
    }
}

/// The message with idempotency key `key`, with its version.
pub async fn read_outgoing(
    store: &dyn Store<NotificationSchema>,
    key: &str,
) -> Result<Option<Versioned<Outgoing>>, StoreError> {
    let query = NotificationQuery::Outgoing {
        key: key.to_owned(),
    };
    match store.query(query).await? {
        NotificationAnswer::Outgoing(o) => Ok(o.map(|o| *o)),
        other => Err(StoreError::Fatal(format!(
            "a message read answered {other:?}"
        ))),
    }
}

/// A recipient's feed as read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    /// `None`: nothing was ever written for the recipient.
    pub epoch: Option<String>,
    /// The oldest update kept (0 when none is).
    pub first_seq: i64,
    /// The newest update (0 when none was written).
    pub last_seq: i64,
    /// The updates asked for, by seq.
    pub updates: Vec<Update>,
}

/// The notification store's tables in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationModel {
    pub feeds: BTreeMap<String, Feed>,
    /// By `(recipient, seq)`.
    pub updates: BTreeMap<(String, i64), Update>,
    /// Messages by idempotency key.
    pub outgoing: BTreeMap<String, Versioned<Outgoing>>,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn broken(what: &str, key: &str) -> StoreError {
    StoreError::Fatal(format!("{what} {key} breaks the table's constraints"))
}

fn check_feed(f: &Feed) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&chars(&f.recipient)) && (1..=64).contains(&chars(&f.epoch));
    ok.then_some(()).ok_or_else(|| broken("feed", &f.recipient))
}

fn check_update(u: &Update) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&chars(&u.recipient))
        && u.seq >= 1
        && KINDS.contains(&u.kind.as_str())
        && chars(&u.subject) <= 64
        && u.body.len() <= BODY_BYTES_MAX;
    ok.then_some(())
        .ok_or_else(|| broken("update", &format!("{}/{}", u.recipient, u.seq)))
}

fn check_outgoing(o: &Outgoing) -> Result<(), StoreError> {
    let ok = (1..=KEY_BYTES_MAX).contains(&o.key.len())
        && (1..=64).contains(&chars(&o.recipient))
        && CHANNELS.contains(&o.channel.as_str())
        && (1..=64).contains(&chars(&o.template))
        && o.request.len() <= REQUEST_BYTES_MAX
        && chars(&o.subject) <= 256
        && o.body.len() <= BODY_BYTES_MAX
        && DELIVERY_STATUSES.contains(&o.status.as_str())
        && o.attempts >= 0
        && chars(&o.reason) <= 512
        && chars(&o.provider_id) <= 128
        && chars(&o.trace) <= platform::trace::STORED_CHARS_MAX;
    ok.then_some(()).ok_or_else(|| broken("message", &o.key))
}

/// The notification store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotificationSchema;

impl Schema for NotificationSchema {
    type Write = NotificationWrite;
    type Query = NotificationQuery;
    type Answer = NotificationAnswer;
    type Model = NotificationModel;

    fn apply(m: &mut NotificationModel, write: NotificationWrite) -> Result<(), StoreError> {
        match write {
            NotificationWrite::Open(f) => {
                check_feed(&f)?;
                m.feeds.entry(f.recipient.clone()).or_insert(f);
            }
            NotificationWrite::Append(u) => {
                check_update(&u)?;
                let key = (u.recipient.clone(), u.seq);
                if m.updates.contains_key(&key) {
                    return Err(StoreError::conflict(
                        "updates",
                        &format!("{}/{}", u.recipient, u.seq),
                    ));
                }
                m.updates.insert(key, u);
            }
            NotificationWrite::Trim {
                recipient,
                keep_from,
            } => {
                let last = last_seq(m, &recipient);
                let below = keep_from.min(last);
                m.updates
                    .retain(|(r, seq), _| r != &recipient || *seq >= below);
            }
            NotificationWrite::Queue(o) => {
                // As PostgreSQL checks: the row's constraints, then its key.
                check_outgoing(&o)?;
                if m.outgoing.contains_key(&o.key) {
                    return Err(StoreError::conflict("outgoing", &o.key));
                }
                m.outgoing.insert(
                    o.key.clone(),
                    Versioned {
                        version: 1,
                        value: o,
                    },
                );
            }
            NotificationWrite::Settle { outgoing, version } => {
                if m.outgoing.get(&outgoing.key).map(|v| v.version) != Some(version) {
                    return Err(StoreError::conflict("outgoing", &outgoing.key));
                }
                check_outgoing(&outgoing)?;
                m.outgoing.insert(
                    outgoing.key.clone(),
                    Versioned {
                        version: version + 1,
                        value: outgoing,
                    },
                );
            }
        }
        Ok(())
    }

    fn work(write: &NotificationWrite) -> Vec<WorkMark> {
        match write {
            NotificationWrite::Queue(o) | NotificationWrite::Settle { outgoing: o, .. } => {
                vec![WorkMark {
                    kind: OUTGOING.into(),
                    key: o.key.clone(),
                    active: o.is_pending(),
                }]
            }
            _ => Vec::new(),
        }
    }

    fn query(m: &NotificationModel, query: &NotificationQuery) -> NotificationAnswer {
        match query {
            NotificationQuery::Outgoing { key } => {
                NotificationAnswer::Outgoing(m.outgoing.get(key).cloned().map(Box::new))
            }
            NotificationQuery::Feed {
                recipient,
                after,
                limit,
            } => {
                let mut of_recipient = m
                    .updates
                    .range((recipient.clone(), i64::MIN)..=(recipient.clone(), i64::MAX));
                let first_seq = of_recipient.next().map_or(0, |((_, s), _)| *s);
                NotificationAnswer::Feed(FeedPage {
                    epoch: m.feeds.get(recipient).map(|f| f.epoch.clone()),
                    first_seq,
                    last_seq: last_seq(m, recipient),
                    updates: m
                        .updates
                        .range(
                            (recipient.clone(), after.saturating_add(1))
                                ..=(recipient.clone(), i64::MAX),
                        )
                        .take(*limit as usize)
                        .map(|(_, u)| u.clone())
                        .collect(),
                })
            }
        }
    }
}

fn last_seq(m: &NotificationModel, recipient: &str) -> i64 {
    m.updates
        .range((recipient.to_owned(), i64::MIN)..=(recipient.to_owned(), i64::MAX))
        .next_back()
        .map_or(0, |((_, s), _)| *s)
}
