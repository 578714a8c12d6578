//! One client session on a recipient's feed, whatever carries it (SSE or WebSocket): what to
//! send, in order, without gaps or repeats.
//!
//! The order of operations is what makes it gapless:
//! 1. **register live first** — subscribe to the recipient's wake-ups ([`Changes`]) before
//!    reading anything, so an update committed while the log is being read still wakes the
//!    session;
//! 2. **replay** the log from the resume point (`epoch:seq`), in pages;
//! 3. **go live**: on each wake-up (a local commit, or a Redis hint from another instance)
//!    read the log after the last seq sent — so a hint whose seq skips ahead fetches the
//!    whole missing range, and a repeated hint finds nothing new (deduplicated by seq);
//! 4. **check the position** every [`Limits::position_check`] even without a wake-up, so a
//!    lost hint (Redis is at most once) delays an update, never loses it.
//!
//! A resume point the log cannot serve — another epoch, older than the oldest update kept,
//! or beyond the end — gets an explicit [`Frame::Reset`]: the client reloads its state and
//! goes on from the log's end. A client more than [`Limits::lag_max`] updates behind is
//! disconnected with a reason ([`Frame::Close`]); a session holds at most one page in
//! memory, however slow its client.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use platform::{changes::Changes, ports::Store, Shutdown};
use tokio::time::Instant;

use crate::store::{FeedPage, NotificationSchema, Update, KINDS};

/// The epoch of a resume point taken before a feed's first update (`0:0`: from the start).
pub const EPOCH_NONE: &str = "0";

/// Bounds of one session.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Updates read per page.
    pub page: u32,
    /// Read the log after this long without a wake-up.
    pub position_check: Duration,
    /// Send a keep-alive after this long without anything else.
    pub keep_alive: Duration,
    /// Disconnect a client this many updates behind the log's end.
    pub lag_max: i64,
    /// The reconnection delay clients are told (SSE `retry:`), in ms.
    pub retry_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            page: 100,
            position_check: Duration::from_secs(5),
            keep_alive: Duration::from_secs(15),
            lag_max: 1000,
            retry_ms: 2000,
        }
    }
}

/// A position in a feed: `epoch:seq`, the last update a client has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub seq: i64,
}

impl Position {
    /// Parses `epoch:seq`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("a resume point is `epoch:seq` (e.g. `0:0`), not {text:?}");
        let (epoch, seq) = text.trim().rsplit_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        let epoch_ok = (1..=64).contains(&epoch.len())
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !epoch_ok || seq < 0 {
            return Err(bad());
        }
        Ok(Position {
            epoch: epoch.into(),
            seq,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// Which updates a client wants (server-side filters); the position moves past the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only updates about this subject (an order id).
    pub subject: Option<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
}

impl Filter {
    /// The filter of `subject` and comma-separated `kinds`; an unknown kind is refused.
    pub fn new(subject: Option<String>, kinds: Option<&str>) -> Result<Self, String> {
        let kinds: Vec<String> = kinds
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(k) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown kind {k:?}; kinds are {}",
                KINDS.join(", ")
            ));
        }
        if subject
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 64)
        {
            return Err("a subject filter is 1 to 64 characters".into());
        }
        Ok(Filter { subject, kinds })
    }

    fn accepts(&self, u: &Update) -> bool {
        self.subject.as_ref().is_none_or(|s| s == &u.subject)
            && (self.kinds.is_empty() || self.kinds.contains(&u.kind))
    }
}

/// What a session sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Where the session starts (sent first when the client gave no resume point).
    Position(Position),
    /// An update, at `epoch:seq`.
    Update { epoch: String, update: Update },
    /// The client's resume point cannot be served: reload, then go on from `at`.
    Reset { at: Position, reason: String },
    /// Nothing to say (keeps proxies and clients from timing the connection out).
    KeepAlive,
    /// The server ends the session; the client reconnects and resumes.
    Close { reason: String, why: CloseWhy },
}

/// Why the server ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseWhy {
    /// The server is shutting down.
    Shutdown,
    /// The client fell more than [`Limits::lag_max`] updates behind.
    TooSlow,
    /// The log cannot be read now.
    Unavailable,
}

/// One session's state.
pub struct Session {
    store: Arc<dyn Store<NotificationSchema>>,
    recipient: String,
    filter: Filter,
    limits: Limits,
    sub: platform::changes::Subscription,
    shutdown: Shutdown,
    /// `None` until the log was first read.
    epoch: Option<String>,
    /// The last seq passed (sent or filtered out).
    seq: i64,
    resume: Option<Position>,
    pending: VecDeque<Frame>,
    started: bool,
    /// More of the log may follow the last page read.
    more: bool,
    last_sent: Instant,
    ended: bool,
    /// `false`: the mutant `notify-without-replay`.
    replay: bool,
}

impl Session {
    /// Opens a session: registers for wake-ups of `recipient` at once (before any read).
    pub fn open(
        store: Arc<dyn Store<NotificationSchema>>,
        changes: &Changes,
        recipient: &str,
        resume: Option<Position>,
        filter: Filter,
        limits: Limits,
        shutdown: Shutdown,
    ) -> Self {
        Session {
            sub: changes.subscribe(recipient),
            store,
            recipient: recipient.into(),
            filter,
            limits,
            shutdown,
            epoch: None,
            seq: 0,
            resume,
            pending: VecDeque::new(),
            started: false,
            more: true,
            last_sent: Instant::now(),
            ended: false,
            replay: true,
        }
    }

    /// The mutant `notify-without-replay`: the session skips to the log's end instead of
    /// replaying from the resume point.
    pub fn without_replay(mut self) -> Self {
        self.replay = false;
        self
    }

    async fn read(&self, after: i64, limit: u32) -> Result<FeedPage, Frame> {
        crate::store::read_feed(&*self.store, &self.recipient, after, limit)
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "feed read failed; the client will reconnect");
                Frame::Close {
                    reason: "the notification log cannot be read now".into(),
                    why: CloseWhy::Unavailable,
                }
            })
    }

    fn epoch_of(page: &FeedPage) -> String {
        page.epoch.clone().unwrap_or_else(|| EPOCH_NONE.into())
    }

    /// Where the session starts: the resume point when the log can serve it.
    fn start(&mut self, page: &FeedPage) {
        let epoch = Self::epoch_of(page);
        let end = Position {
            epoch: epoch.clone(),
            seq: page.last_seq,
        };
        self.epoch = Some(epoch.clone());
        let Some(resume) = self.resume.take() else {
            self.seq = page.last_seq;
            self.pending.push_back(Frame::Position(end));
            return;
        };
        if !self.replay {
            self.seq = page.last_seq;
            return;
        }
        // Before the feed's first update, `0:0` means "from the start".
        let from_start = resume.epoch == EPOCH_NONE && resume.seq == 0;
        let problem = if from_start {
            (page.first_seq > 1).then_some("the log no longer holds its start")
        } else if resume.epoch != epoch {
            Some("the resume point is from another epoch of the log")
        } else if resume.seq > page.last_seq {
            Some("the resume point is beyond the log's end")
        } else if page.first_seq > resume.seq + 1 {
            Some("the resume point is older than the log keeps")
        } else {
            None
        };
        match problem {
            None => self.seq = resume.seq,
            Some(reason) => {
                self.seq = page.last_seq;
                self.pending.push_back(Frame::Reset {
                    at: end,
                    reason: reason.into(),
                });
            }
        }
    }

    /// Reads the log after the position and queues what the client gets.
    async fn catch_up(&mut self) -> Result<(), Frame> {
        // The first read starts at the resume point (or reads only the log's head).
        let after = match (&self.resume, self.started) {
            (_, true) => self.seq,
            (Some(r), false) if self.replay => r.seq,
            _ => i64::MAX,
        };
        let page = self.read(after, self.limits.page).await?;
        if !self.started {
            self.started = true;
            self.start(&page);
        }
        let epoch = Self::epoch_of(&page);
        if self.epoch.as_deref() == Some(EPOCH_NONE) && self.seq == 0 {
            // The feed got its first update (and so its epoch) since the session started.
            self.epoch = Some(epoch.clone());
        }
        if self.epoch.as_deref() != Some(epoch.as_str()) || page.first_seq > self.seq + 1 {
            // The log was reset or trimmed past us while we were connected.
            self.epoch = Some(epoch.clone());
            self.seq = page.last_seq;
            self.pending.push_back(Frame::Reset {
                at: Position {
                    epoch,
                    seq: page.last_seq,
                },
                reason: "the log moved on without this session".into(),
            });
            self.more = true;
            return Ok(());
        }
        if page.last_seq - self.seq > self.limits.lag_max {
            return Err(Frame::Close {
                reason: format!(
                    "the client is more than {} updates behind; reconnect and resume",
                    self.limits.lag_max
                ),
                why: CloseWhy::TooSlow,
            });
        }
        self.more = page.updates.len() as u32 >= self.limits.page;
        for u in page.updates {
            if u.seq != self.seq + 1 {
                break; // not contiguous (trimmed meanwhile): the next read resets
            }
            self.seq = u.seq;
            if self.filter.accepts(&u) {
                self.pending.push_back(Frame::Update {
                    epoch: epoch.clone(),
                    update: u,
                });
            }
        }
        Ok(())
    }

    /// The next frame to send; `None` once the session ended.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(f) = self.pending.pop_front() {
                if matches!(f, Frame::Close { .. }) {
                    self.ended = true;
                }
                self.last_sent = Instant::now();
                return Some(f);
            }
            if self.shutdown.is_requested() {
                self.pending.push_back(Frame::Close {
                    reason: "the server is shutting down".into(),
                    why: CloseWhy::Shutdown,
                });
                continue;
            }
            if !self.started || self.more {
                if let Err(close) = self.catch_up().await {
                    self.pending.push_back(close);
                }
                continue;
            }
            let keep_alive_at = self.last_sent + self.limits.keep_alive;
            tokio::select! {
                biased;
                _ = self.shutdown.wait() => {}
                _ = self.sub.next_change_within(self.limits.position_check) => {
                    self.more = true;
                }
                _ = tokio::time::sleep_until(keep_alive_at) => {
                    self.pending.push_back(Frame::KeepAlive);
                }
            }
        }
    }

    /// The last seq passed.
    pub fn position(&self) -> i64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use platform::{ports::Tx, shutdown::ShutdownTrigger, store::MemoryStore};

    use super::*;
    use crate::{store::NotificationWrite, FanOut};

    struct World {
        store: Arc<dyn Store<NotificationSchema>>,
        /// Commits through here wake sessions (as after an instance's own commit).
        announced: Arc<dyn Store<NotificationSchema>>,
        fan_out: FanOut,
        _stop: ShutdownTrigger,
        shutdown: Shutdown,
    }

    fn world() -> World {
        let (stop, shutdown) = Shutdown::new();
        let store: Arc<dyn Store<NotificationSchema>> =
            Arc::new(MemoryStore::<NotificationSchema>::default());
        let fan_out = FanOut::start(
            Arc::new(platform::ports::LocalHints::default()),
            shutdown.clone(),
        );
        World {
            announced: fan_out.observe(store.clone()),
            store,
            fan_out,
            _stop: stop,
            shutdown,
        }
    }

    const ALICE: &str = "alice";

    async fn add(store: &Arc<dyn Store<NotificationSchema>>, subject: &str) -> i64 {
        let tx = crate::append(&**store, ALICE, "order.status", subject, "{}".into())
            .await
            .expect("append");
        let seq = tx
            .writes
            .iter()
            .find_map(|w| match w {
                NotificationWrite::Append(u) => Some(u.seq),
                _ => None,
            })
            .expect("an append");
        store.commit(tx).await.expect("commit");
        seq
    }

    fn limits() -> Limits {
        Limits {
            page: 2,
            position_check: Duration::from_millis(50),
            ..Limits::default()
        }
    }

    fn open(w: &World, resume: Option<&str>, filter: Filter, limits: Limits) -> Session {
        Session::open(
            w.store.clone(),
            &w.fan_out.changes,
            ALICE,
            resume.map(|r| Position::parse(r).expect("position")),
            filter,
            limits,
            w.shutdown.clone(),
        )
    }

    async fn next(s: &mut Session) -> Frame {
        tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a frame within 10 s")
            .expect("the session goes on")
    }

    fn seq_of(f: &Frame) -> i64 {
        match f {
            Frame::Update { update, .. } => update.seq,
            other => panic!("expected an update, got {other:?}"),
        }
    }

    async fn epoch(w: &World) -> String {
        crate::store::read_feed(&*w.store, ALICE, 0, 0)
            .await
            .expect("read")
            .epoch
            .expect("an epoch")
    }

    #[tokio::test]
    async fn a_resumed_session_replays_in_pages_then_goes_live_without_repeats() {
        let w = world();
        for _ in 0..5 {
            add(&w.store, "o1").await;
        }
        let mut s = open(&w, Some("0:0"), Filter::default(), limits());
        for want in 1..=5 {
            assert_eq!(seq_of(&next(&mut s).await), want);
        }
        assert_eq!(add(&w.announced, "o1").await, 6);
        assert_eq!(seq_of(&next(&mut s).await), 6);
        // Resuming from 3 in the same epoch gives 4, 5, 6 and nothing twice.
        let mut again = open(
            &w,
            Some(&format!("{}:3", epoch(&w).await)),
            Filter::default(),
            limits(),
        );
        for want in 4..=6 {
            assert_eq!(seq_of(&next(&mut again).await), want);
        }
    }

    #[tokio::test]
    async fn without_a_resume_point_a_session_starts_at_the_end_and_says_where() {
        let w = world();
        add(&w.store, "o1").await;
        add(&w.store, "o1").await;
        let mut s = open(&w, None, Filter::default(), limits());
        let e = epoch(&w).await;
        assert_eq!(
            next(&mut s).await,
            Frame::Position(Position { epoch: e, seq: 2 })
        );
        add(&w.announced, "o1").await;
        assert_eq!(seq_of(&next(&mut s).await), 3);
    }

    #[tokio::test]
    async fn an_update_whose_hint_was_lost_arrives_at_the_next_position_check() {
        let w = world();
        let mut s = open(&w, Some("0:0"), Filter::default(), limits());
        // Committed without any announcement (another instance, its hint lost).
        add(&w.store, "o1").await;
        assert_eq!(seq_of(&next(&mut s).await), 1);
    }

    #[tokio::test]
    async fn a_resume_point_the_log_cannot_serve_gets_a_reset() {
        let w = world();
        for _ in 0..4 {
            add(&w.store, "o1").await;
        }
        let e = epoch(&w).await;
        let cases = [
            ("another-epoch:2".to_owned(), "another epoch"),
            (format!("{e}:9"), "beyond the log's end"),
        ];
        let mut last = 4;
        for (resume, why) in cases {
            let mut s = open(&w, Some(&resume), Filter::default(), limits());
            match next(&mut s).await {
                Frame::Reset { at, reason } => {
                    assert_eq!(
                        at,
                        Position {
                            epoch: e.clone(),
                            seq: last
                        },
                        "{why}"
                    );
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{why}: expected a reset, got {other:?}"),
            }
            last = add(&w.announced, "o1").await;
            let after = next(&mut s).await;
            assert!(
                matches!(after, Frame::Update { .. }),
                "{why}: live after the reset"
            );
        }
        // Trimmed: 1..=4 are gone, 5 and 6 kept.
        w.store
            .commit(Tx::new().write(NotificationWrite::Trim {
                recipient: ALICE.into(),
                keep_from: 5,
            }))
            .await
            .expect("trim");
        for resume in [format!("{e}:2"), "0:0".to_owned()] {
            let mut s = open(&w, Some(&resume), Filter::default(), limits());
            assert!(
                matches!(next(&mut s).await, Frame::Reset { ref reason, .. } if reason.contains("no longer") || reason.contains("older")),
                "{resume}"
            );
        }
        // Still served: the update just before the oldest kept.
        let mut s = open(&w, Some(&format!("{e}:4")), Filter::default(), limits());
        assert_eq!(seq_of(&next(&mut s).await), 5);
    }

    #[tokio::test]
    async fn appends_keep_the_last_updates_and_an_older_resume_point_is_reset() {
        let w = world();
        for _ in 0..5 {
            let tx = crate::append_keeping(&*w.store, ALICE, "notice", "", "{}".into(), 3)
                .await
                .expect("append");
            w.store.commit(tx).await.expect("commit");
        }
        let page = crate::store::read_feed(&*w.store, ALICE, 0, 10)
            .await
            .expect("read");
        assert_eq!((page.first_seq, page.last_seq), (3, 5));
        let seqs: Vec<i64> = page.updates.iter().map(|u| u.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let e = page.epoch.expect("epoch");
        let mut from_1 = open(&w, Some(&format!("{e}:1")), Filter::default(), limits());
        assert!(matches!(next(&mut from_1).await, Frame::Reset { .. }));
        let mut from_2 = open(&w, Some(&format!("{e}:2")), Filter::default(), limits());
        assert_eq!(
            seq_of(&next(&mut from_2).await),
            3,
            "2 is still a valid resume point"
        );
    }

    #[tokio::test]
    async fn filters_skip_updates_and_the_position_moves_past_them() {
        let w = world();
        add(&w.store, "o1").await;
        add(&w.store, "o2").await;
        add(&w.store, "o1").await;
        let only_o1 = Filter::new(Some("o1".into()), Some("order.status")).expect("filter");
        let mut s = open(&w, Some("0:0"), only_o1, limits());
        assert_eq!(seq_of(&next(&mut s).await), 1);
        assert_eq!(seq_of(&next(&mut s).await), 3);
        assert_eq!(s.position(), 3);
        assert!(Filter::new(None, Some("order.status,bogus")).is_err());
        assert!(Filter::new(Some(String::new()), None).is_err());
    }

    #[tokio::test]
    async fn a_client_too_far_behind_is_disconnected_with_a_reason() {
        let w = world();
        for _ in 0..6 {
            add(&w.store, "o1").await;
        }
        let tight = Limits {
            lag_max: 3,
            ..limits()
        };
        let mut s = open(&w, Some("0:0"), Filter::default(), tight);
        match next(&mut s).await {
            Frame::Close { reason, why } => {
                assert!(
                    reason.contains("behind") && why == CloseWhy::TooSlow,
                    "{reason}"
                );
            }
            other => panic!("expected a close, got {other:?}"),
        }
        assert!(s.next().await.is_none(), "the session ends after its close");
    }

    #[tokio::test]
    async fn an_idle_session_sends_keep_alives_and_a_shutdown_closes_it() {
        let w = world();
        let quick = Limits {
            keep_alive: Duration::from_millis(20),
            position_check: Duration::from_secs(60),
            ..limits()
        };
        let mut s = open(&w, None, Filter::default(), quick);
        assert!(matches!(next(&mut s).await, Frame::Position(_)));
        assert_eq!(next(&mut s).await, Frame::KeepAlive);
        drop(w._stop);
        assert!(matches!(
            next(&mut s).await,
            Frame::Close {
                why: CloseWhy::Shutdown,
                ..
            }
        ));
    }

    #[test]
    fn resume_points_parse_or_say_why() {
        assert_eq!(
            Position::parse("abc:12"),
            Ok(Position {
                epoch: "abc".into(),
                seq: 12
            })
        );
        for bad in ["", "12", "abc:", "abc:-1", ":3", "a b:1", "abc:x"] {
            assert!(Position::parse(bad).is_err(), "{bad:?}");
        }
    }
}
