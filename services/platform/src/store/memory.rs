//! An in-memory store with the same semantics as the Postgres adapter. It defines the meaning
//! of the [`Store`] port; the conformance suite holds every adapter to it.
//!
//! Time enters as `now_ms` (milliseconds since the epoch) from the caller: the simulation's DB
//! node passes its simulated clock, [`MemoryStore`] the system clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;

use crate::ports::store::{
    liveness_lease, Claimed, Cleaned, OutboxRow, Store, StoreError, Tx, Versioned,
};

/// One stored record with its work flag and claim.
#[derive(Clone, Debug)]
struct Record {
    value: Versioned,
    active: bool,
    /// The current claim's owner, if it was ever claimed.
    claim: Option<String>,
    /// The fencing token of the latest claim (0: never claimed).
    claim_token: i64,
}

/// A named lease: owner, token, expiry (ms).
#[derive(Clone, Debug)]
struct LeaseState {
    owner: String,
    token: i64,
    until_ms: u64,
}

/// The whole state of one service database. Applying a [`Tx`] is atomic: it checks
/// everything first and writes only if every check passes.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    records: BTreeMap<(String, String), Record>,
    /// Outbox rows by id, with the time they were marked sent.
    outbox: BTreeMap<i64, (OutboxRow, Option<u64>)>,
    /// Inbox marks with the time they were recorded.
    inbox: BTreeMap<(String, String), u64>,
    leases: BTreeMap<String, LeaseState>,
    next_outbox_id: i64,
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl MemoryState {
    /// The record at `table/key`.
    pub fn get(&self, table: &str, key: &str) -> Option<Versioned> {
        self.records
            .get(&(table.to_owned(), key.to_owned()))
            .map(|r| r.value.clone())
    }

    /// Up to `limit` active records of `table`, by key.
    pub fn list_active(&self, table: &str, limit: usize) -> Vec<(String, Versioned)> {
        self.records
            .iter()
            .filter(|((t, _), r)| t == table && r.active)
            .take(limit)
            .map(|((_, k), r)| (k.clone(), r.value.clone()))
            .collect()
    }

    /// Every record of `table` (for checkers and tests).
    pub fn all(&self, table: &str) -> Vec<(String, Versioned)> {
        self.records
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|((_, k), r)| (k.clone(), r.value.clone()))
            .collect()
    }

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

    /// Applies `tx` atomically at `now_ms`.
    pub fn apply(&mut self, tx: Tx, now_ms: u64) -> Result<(), StoreError> {
        for e in &tx.expect {
            let current = self
                .records
                .get(&(e.table.clone(), e.key.clone()))
                .map(|r| r.value.version);
            if current != e.version {
                return Err(StoreError::Conflict {
                    table: e.table.clone(),
                    key: e.key.clone(),
                });
            }
        }
        for c in &tx.claims {
            let held = self
                .records
                .get(&(c.table.clone(), c.key.clone()))
                .is_some_and(|r| {
                    r.claim_token == c.token && r.claim.as_deref() == Some(c.owner.as_str())
                });
            if !held {
                return Err(StoreError::Conflict {
                    table: c.table.clone(),
                    key: c.key.clone(),
                });
            }
        }
        let mut seen = BTreeSet::new();
        for m in &tx.inbox {
            let k = (m.consumer.clone(), m.event_id.clone());
            if self.inbox.contains_key(&k) || !seen.insert(k) {
                return Err(StoreError::Duplicate {
                    consumer: m.consumer.clone(),
                    event_id: m.event_id.clone(),
                });
            }
        }
        for p in tx.puts {
            let k = (p.table, p.key);
            match self.records.get_mut(&k) {
                Some(r) => {
                    r.value = Versioned {
                        version: r.value.version + 1,
                        body: p.body,
                    };
                    r.active = p.active;
                }
                None => {
                    self.records.insert(
                        k,
                        Record {
                            value: Versioned {
                                version: 1,
                                body: p.body,
                            },
                            active: p.active,
                            claim: None,
                            claim_token: 0,
                        },
                    );
                }
            }
        }
        for message in tx.outbox {
            self.next_outbox_id += 1;
            let id = self.next_outbox_id;
            self.outbox.insert(id, (OutboxRow { id, message }, None));
        }
        for m in tx.inbox {
            self.inbox.insert((m.consumer, m.event_id), now_ms);
        }
        Ok(())
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

    /// See [`Store::claim_active`].
    pub fn claim_active(
        &mut self,
        table: &str,
        owner: &str,
        limit: usize,
        now_ms: u64,
    ) -> Vec<Claimed> {
        let alive = |leases: &BTreeMap<String, LeaseState>, o: &str| {
            leases
                .get(&liveness_lease(o))
                .is_some_and(|l| l.owner == o && l.until_ms > now_ms)
        };
        let (mut held, mut taken) = (Vec::new(), Vec::new());
        for ((t, key), r) in self.records.iter_mut() {
            if t != table || !r.active {
                continue;
            }
            let claimed = |r: &Record| Claimed {
                key: key.clone(),
                record: r.value.clone(),
                token: r.claim_token,
            };
            match r.claim.as_deref() {
                Some(o) if o == owner => {
                    if held.len() < limit {
                        held.push(claimed(r));
                    }
                }
                Some(o) if alive(&self.leases, o) => {}
                _ => {
                    if taken.len() < limit {
                        r.claim = Some(owner.to_owned());
                        r.claim_token += 1;
                        taken.push(claimed(r));
                    }
                }
            }
        }
        held.extend(taken);
        held.sort_by(|a, b| a.key.cmp(&b.key));
        held
    }

    /// See [`Store::acquire_lease`].
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

    /// See [`Store::cleanup`].
    pub fn cleanup(&mut self, retention: Duration, now_ms: u64) -> Cleaned {
        let before = now_ms.saturating_sub(duration_ms(retention));
        let (rows, marks) = (self.outbox.len(), self.inbox.len());
        self.outbox
            .retain(|_, (_, sent)| sent.is_none_or(|at| at > before));
        self.inbox.retain(|_, at| *at > before);
        Cleaned {
            outbox_rows: (rows - self.outbox.len()) as u64,
            inbox_marks: (marks - self.inbox.len()) as u64,
        }
    }
}

/// Milliseconds since the epoch by the system clock (simulated under madsim).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| duration_ms(d))
}

/// A [`Store`] over a [`MemoryState`] in this process.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// Shared so tests can inspect the state the service wrote.
    pub state: Arc<Mutex<MemoryState>>,
}

impl MemoryStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Fatal("memory store poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, table: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock()?.get(table, key))
    }
    async fn list_active(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        Ok(self.lock()?.list_active(table, limit))
    }
    async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        self.lock()?.apply(tx, now_ms())
    }
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self.lock()?.outbox_pending(limit))
    }
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.lock()?.outbox_mark_sent(ids, now_ms());
        Ok(())
    }
    async fn claim_active(
        &self,
        table: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        Ok(self.lock()?.claim_active(table, owner, limit, now_ms()))
    }
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self.lock()?.acquire_lease(name, owner, lease, now_ms()))
    }
    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError> {
        Ok(self.lock()?.cleanup(retention, now_ms()))
    }
}
