//! The notification service's typed store: one log of user-facing updates per recipient.
//! SQL: `migrations/notification/`; Postgres twin: `adapters::postgres::schemas::notification`.
//!
//! Each update has a per-recipient sequence number, 1, 2, 3, … without gaps: an append
//! takes `last + 1` and conflicts when another append took it first (the effect then runs
//! again). The feed's epoch is drawn when its first update is written and changes only if
//! the log is ever reset (its feed row recreated): a client's resume point `epoch:seq` from
//! another epoch means nothing, so the client is told to reload. Retention trims old updates
//! but never the last one, so `last_seq` never goes back and a number is never reused.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError};
use serde::{Deserialize, Serialize};

/// Bound on one update's body (JSON text), in bytes: the largest message a client gets.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// The kinds of update.
pub const KINDS: [&str; 3] = ["order.status", "moderation.result", "notice"];

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

/// The notification store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotificationSchema;

impl Schema for NotificationSchema {
    type Write = NotificationWrite;
    type Query = NotificationQuery;
    type Answer = FeedPage;
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
        }
        Ok(())
    }

    fn query(m: &NotificationModel, query: &NotificationQuery) -> FeedPage {
        match query {
            NotificationQuery::Feed {
                recipient,
                after,
                limit,
            } => {
                let mut of_recipient = m
                    .updates
                    .range((recipient.clone(), i64::MIN)..=(recipient.clone(), i64::MAX));
                let first_seq = of_recipient.next().map_or(0, |((_, s), _)| *s);
                FeedPage {
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
                }
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
