//! A store that tells someone what it committed: [`Observed`] wraps any store and calls a
//! hook with each transaction after it committed (not after a failed or unknown commit). A
//! service uses it to announce its own commits (wake local streams, publish hints) wherever
//! the commit happens — in an API handler or inside a consumer loop it does not own.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::ports::{Claimed, Cleaned, OutboxRow, Platform, Schema, Store, StoreError, Tx};

/// Called with each committed transaction.
pub type AfterCommit<S> = Arc<dyn Fn(&Tx<<S as Schema>::Write>) + Send + Sync>;

/// `inner`, with `after_commit` called after each successful commit.
pub struct Observed<S: Schema> {
    inner: Arc<dyn Store<S>>,
    after_commit: AfterCommit<S>,
}

impl<S: Schema> Observed<S> {
    pub fn new(inner: Arc<dyn Store<S>>, after_commit: AfterCommit<S>) -> Self {
        Observed {
            inner,
            after_commit,
        }
    }
}

#[async_trait]
impl<S: Schema> Platform for Observed<S> {
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.inner.outbox_pending(limit).await
    }
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.inner.outbox_mark_sent(ids).await
    }
    async fn consumed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError> {
        self.inner.consumed(consumer, event_id).await
    }
    async fn list_work(&self, kind: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.list_work(kind, limit).await
    }
    async fn claim_work(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.inner.claim_work(kind, owner, limit).await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        self.inner.acquire_lease(name, owner, lease).await
    }
    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError> {
        self.inner.cleanup(retention).await
    }
}

#[async_trait]
impl<S: Schema> Store<S> for Observed<S> {
    async fn query(&self, query: S::Query) -> Result<S::Answer, StoreError> {
        self.inner.query(query).await
    }
    async fn commit(&self, tx: Tx<S::Write>) -> Result<(), StoreError> {
        // The hook needs the transaction after the commit consumed it: keep the writes.
        let kept = Tx {
            writes: tx.writes.clone(),
            ..Tx::new()
        };
        self.inner.commit(tx).await?;
        (self.after_commit)(&kept);
        Ok(())
    }
}
