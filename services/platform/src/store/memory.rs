//! An in-memory store with the same semantics as the Postgres adapter.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::ports::store::{OutboxRow, Store, StoreError, Tx, Versioned};

/// The whole state of one service database. Applying a [`Tx`] is atomic: it checks
/// everything first and writes only if every check passes.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    records: BTreeMap<(String, String), (Versioned, bool)>,
    outbox: BTreeMap<i64, (OutboxRow, bool)>,
    inbox: BTreeSet<(String, String)>,
    next_outbox_id: i64,
}

impl MemoryState {
    /// The record at `table/key`.
    pub fn get(&self, table: &str, key: &str) -> Option<Versioned> {
        self.records
            .get(&(table.to_owned(), key.to_owned()))
            .map(|(v, _)| v.clone())
    }

    /// Up to `limit` active records of `table`, by key.
    pub fn list_active(&self, table: &str, limit: usize) -> Vec<(String, Versioned)> {
        self.records
            .iter()
            .filter(|((t, _), (_, active))| t == table && *active)
            .take(limit)
            .map(|((_, k), (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Every record of `table` (for checkers and tests).
    pub fn all(&self, table: &str) -> Vec<(String, Versioned)> {
        self.records
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|((_, k), (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Every outbox row ever written, sent or not (for checkers).
    pub fn outbox_all(&self) -> Vec<(OutboxRow, bool)> {
        self.outbox.values().cloned().collect()
    }

    /// Applies `tx` atomically.
    pub fn apply(&mut self, tx: Tx) -> Result<(), StoreError> {
        for e in &tx.expect {
            let current = self
                .records
                .get(&(e.table.clone(), e.key.clone()))
                .map(|(v, _)| v.version);
            if current != e.version {
                return Err(StoreError::Conflict {
                    table: e.table.clone(),
                    key: e.key.clone(),
                });
            }
        }
        let mut seen = BTreeSet::new();
        for m in &tx.inbox {
            let k = (m.consumer.clone(), m.event_id.clone());
            if self.inbox.contains(&k) || !seen.insert(k) {
                return Err(StoreError::Duplicate {
                    consumer: m.consumer.clone(),
                    event_id: m.event_id.clone(),
                });
            }
        }
        for p in tx.puts {
            let k = (p.table, p.key);
            let version = self.records.get(&k).map_or(0, |(v, _)| v.version) + 1;
            self.records.insert(
                k,
                (
                    Versioned {
                        version,
                        body: p.body,
                    },
                    p.active,
                ),
            );
        }
        for message in tx.outbox {
            self.next_outbox_id += 1;
            let id = self.next_outbox_id;
            self.outbox.insert(id, (OutboxRow { id, message }, false));
        }
        for m in tx.inbox {
            self.inbox.insert((m.consumer, m.event_id));
        }
        Ok(())
    }

    /// Up to `limit` unsent outbox rows, oldest first.
    pub fn outbox_pending(&self, limit: usize) -> Vec<OutboxRow> {
        self.outbox
            .values()
            .filter(|(_, sent)| !sent)
            .take(limit)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Marks rows as sent.
    pub fn outbox_mark_sent(&mut self, ids: &[i64]) {
        for id in ids {
            if let Some((_, sent)) = self.outbox.get_mut(id) {
                *sent = true;
            }
        }
    }
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
        self.lock()?.apply(tx)
    }
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self.lock()?.outbox_pending(limit))
    }
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.lock()?.outbox_mark_sent(ids);
        Ok(())
    }
}
