//! An in-memory store with the same semantics as the Postgres adapter. Together with each
//! service's [`Schema`] model it defines the meaning of the store port; the conformance suite
//! and the differential tests hold the Postgres adapter to it.
//!
//! Time enters as `now_ms` (milliseconds since the epoch) from the caller: the simulation's DB
//! node passes its simulated clock, [`MemoryStore`] the system clock.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;

use crate::ports::store::{
    liveness_lease, Claimed, Cleaned, OutboxRow, Platform, Schema, Store, StoreError, Tx,
};

/// One work item: whether it is active, its claim's owner and fencing token.
#[derive(Clone, Debug, Default)]
struct WorkItem {
    active: bool,
    owner: Option<String>,
    /// The token of the latest claim (0: never claimed).
    token: i64,
}

/// A named lease: owner, token, expiry (ms).
#[derive(Clone, Debug)]
struct LeaseState {
    owner: String,
    token: i64,
    until_ms: u64,
}

/// What every store shares: outbox, inbox, work items and leases.
#[derive(Clone, Debug, Default)]
pub struct PlatformState {
    /// Outbox rows by id, with the time they were marked sent.
    outbox: BTreeMap<i64, (OutboxRow, Option<u64>)>,
    /// Inbox marks with the time they were recorded.
    inbox: BTreeMap<(String, String), u64>,
    work: BTreeMap<(String, String), WorkItem>,
    leases: BTreeMap<String, LeaseState>,
    next_outbox_id: i64,
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the epoch by the system clock (simulated under madsim).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, duration_ms)
}

/// The whole state of one service database: its schema's model and the platform tables.
/// Applying a [`Tx`] is atomic: it checks everything first and writes only if every check
/// passes.
#[derive(Clone, Debug)]
pub struct MemoryState<S: Schema> {
    pub model: S::Model,
    pub platform: PlatformState,
}

impl<S: Schema> Default for MemoryState<S> {
    fn default() -> Self {
        MemoryState {
            model: S::Model::default(),
            platform: PlatformState::default(),
        }
    }
}

impl<S: Schema> MemoryState<S> {
    /// Answers `query`.
    pub fn query(&self, query: &S::Query) -> S::Answer {
        S::query(&self.model, query)
    }

    /// Applies `tx` atomically at `now_ms`.
    pub fn apply(&mut self, tx: Tx<S::Write>, now_ms: u64) -> Result<(), StoreError> {
        let p = &mut self.platform;
        for c in &tx.claims {
            let held = p
                .work
                .get(&(c.kind.clone(), c.key.clone()))
                .is_some_and(|w| w.token == c.token && w.owner.as_deref() == Some(&c.owner));
            if !held {
                return Err(StoreError::conflict(&c.kind, &c.key));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &tx.inbox {
            let k = (m.consumer.clone(), m.event_id.clone());
            if p.inbox.contains_key(&k) || !seen.insert(k) {
                return Err(StoreError::Duplicate {
                    consumer: m.consumer.clone(),
                    event_id: m.event_id.clone(),
                });
            }
        }
        let marks: Vec<_> = tx.writes.iter().flat_map(S::work).collect();
        match tx.writes.len() {
            0 => {}
            // A write that fails changes nothing: no copy needed.
            1 => {
                for w in tx.writes {
                    S::apply(&mut self.model, w)?;
                }
            }
            _ => {
                let mut model = self.model.clone();
                for w in tx.writes {
                    S::apply(&mut model, w)?;
                }
                self.model = model;
            }
        }
        let p = &mut self.platform;
        for mark in marks {
            p.work.entry((mark.kind, mark.key)).or_default().active = mark.active;
        }
        for message in tx.outbox {
            p.next_outbox_id += 1;
            let id = p.next_outbox_id;
            let created_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
            let row = OutboxRow {
                id,
                message,
                created_ms,
            };
            p.outbox.insert(id, (row, None));
        }
        for m in tx.inbox {
            p.inbox.insert((m.consumer, m.event_id), now_ms);
        }
        Ok(())
    }
}

impl PlatformState {
    /// Every outbox row still kept, sent or not (for checkers).
    pub fn outbox_all(&self) -> Vec<(OutboxRow, bool)> {
        self.outbox
            .values()
            .map(|(row, sent)| (row.clone(), sent.is_some()))
            .collect()
    }

    /// How many inbox marks are kept (for tests).
    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    /// Up to `limit` unsent outbox rows, oldest first.
    pub fn outbox_pending(&self, limit: usize) -> Vec<OutboxRow> {
        self.outbox
            .values()
            .filter(|(_, sent)| sent.is_none())
            .take(limit)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Marks rows as sent at `now_ms`.
    pub fn outbox_mark_sent(&mut self, ids: &[i64], now_ms: u64) {
        for id in ids {
            if let Some((_, sent)) = self.outbox.get_mut(id) {
                sent.get_or_insert(now_ms);
            }
        }
    }

    /// See [`Platform::consumed`].
    pub fn consumed(&self, consumer: &str, event_id: &str) -> bool {
        self.inbox
            .contains_key(&(consumer.to_owned(), event_id.to_owned()))
    }

    /// See [`Platform::list_work`].
    pub fn list_work(&self, kind: &str, limit: usize) -> Vec<String> {
        self.work
            .iter()
            .filter(|((k, _), w)| k == kind && w.active)
            .take(limit)
            .map(|((_, key), _)| key.clone())
            .collect()
    }

    /// See [`Platform::claim_work`].
    pub fn claim_work(
        &mut self,
        kind: &str,
        owner: &str,
        limit: usize,
        now_ms: u64,
    ) -> Vec<Claimed> {
        let held: Vec<Claimed> = self
            .work
            .iter()
            .filter(|((k, _), w)| k == kind && w.active && w.owner.as_deref() == Some(owner))
            .take(limit)
            .map(|((_, key), w)| Claimed {
                key: key.clone(),
                token: w.token,
            })
            .collect();
        let room = limit.saturating_sub(held.len());
        let leases = &self.leases;
        let alive = |o: &str| {
            leases
                .get(&liveness_lease(o))
                .is_some_and(|l| l.owner == o && l.until_ms > now_ms)
        };
        let mut out = held;
        let mut taken = 0;
        for ((k, key), w) in self.work.iter_mut() {
            if taken >= room {
                break;
            }
            if k != kind || !w.active {
                continue;
            }
            let free = match w.owner.as_deref() {
                Some(o) if o == owner => false,
                Some(o) => !alive(o),
                None => true,
            };
            if free {
                w.owner = Some(owner.to_owned());
                w.token += 1;
                taken += 1;
                out.push(Claimed {
                    key: key.clone(),
                    token: w.token,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// See [`Platform::acquire_lease`].
    pub fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        lease: Duration,
        now_ms: u64,
    ) -> Option<i64> {
        let until_ms = now_ms.saturating_add(duration_ms(lease));
        match self.leases.get_mut(name) {
            None => {
                self.leases.insert(
                    name.to_owned(),
                    LeaseState {
                        owner: owner.to_owned(),
                        token: 1,
                        until_ms,
                    },
                );
                Some(1)
            }
            Some(l) if l.owner == owner => {
                l.until_ms = until_ms;
                Some(l.token)
            }
            Some(l) if l.until_ms <= now_ms => {
                l.owner = owner.to_owned();
                l.token += 1;
                l.until_ms = until_ms;
                Some(l.token)
            }
            Some(_) => None,
        }
    }

    /// See [`Platform::cleanup`].
    pub fn cleanup(&mut self, retention: Duration, now_ms: u64) -> Cleaned {
        let cutoff = now_ms.saturating_sub(duration_ms(retention));
        let (rows, marks) = (self.outbox.len(), self.inbox.len());
        self.outbox
            .retain(|_, (_, sent)| sent.is_none_or(|at| at > cutoff));
        self.inbox.retain(|_, at| *at > cutoff);
        Cleaned {
            outbox_rows: (rows - self.outbox.len()) as u64,
            inbox_marks: (marks - self.inbox.len()) as u64,
        }
    }
}

/// A [`Store`] over a [`MemoryState`] in this process.
#[derive(Clone, Debug)]
pub struct MemoryStore<S: Schema> {
    /// Shared so tests can inspect the state the service wrote.
    pub state: Arc<Mutex<MemoryState<S>>>,
}

impl<S: Schema> Default for MemoryStore<S> {
    fn default() -> Self {
        MemoryStore {
            state: Arc::new(Mutex::new(MemoryState::default())),
        }
    }
}

impl<S: Schema> MemoryStore<S> {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState<S>>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Fatal("memory store poisoned".into()))
    }
}

#[async_trait]
impl<S: Schema> Platform for MemoryStore<S> {
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self.lock()?.platform.outbox_pending(limit))
    }
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.lock()?.platform.outbox_mark_sent(ids, now_ms());
        Ok(())
    }
    async fn consumed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock()?.platform.consumed(consumer, event_id))
    }
    async fn list_work(&self, kind: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.lock()?.platform.list_work(kind, limit))
    }
    async fn claim_work(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        Ok(self
            .lock()?
            .platform
            .claim_work(kind, owner, limit, now_ms()))
    }
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .lock()?
            .platform
            .acquire_lease(name, owner, lease, now_ms()))
    }
    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError> {
        Ok(self.lock()?.platform.cleanup(retention, now_ms()))
    }
}

#[async_trait]
impl<S: Schema> Store<S> for MemoryStore<S> {
    async fn query(&self, query: S::Query) -> Result<S::Answer, StoreError> {
        Ok(self.lock()?.query(&query))
    }
    async fn commit(&self, tx: Tx<S::Write>) -> Result<(), StoreError> {
        self.lock()?.apply(tx, now_ms())
    }
}
