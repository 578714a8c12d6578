//! The Postgres model: one DB node per service database, reached over the simulated network.
//!
//! The node applies each transaction atomically to a [`MemoryState`] (the service's schema
//! model plus the platform tables) that lives on its
//! "disk" (outside the node's tasks), so committed data survive a node kill and restart.
//! A transaction travels as one message; a lost reply is "commit result unknown", which the
//! client sees as [`StoreError::Unavailable`]. `lose_reply_per_mille` injects exactly that
//! fault: the commit happens and the answer is dropped.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::journal::{Commit, Journal};
use async_trait::async_trait;
use platform::{
    ports::{Claimed, Cleaned, OutboxRow, Platform, Schema, Store, StoreError, Tx},
    store::{now_ms, MemoryState},
};

/// A database's durable state.
pub type DbDisk<S> = Arc<Mutex<MemoryState<S>>>;

/// Bound on one request to a DB node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

enum Request<S: Schema> {
    Query(S::Query),
    Commit(Tx<S::Write>),
    OutboxPending {
        limit: usize,
    },
    MarkSent(Vec<i64>),
    Consumed {
        consumer: String,
        event_id: String,
    },
    ListWork {
        kind: String,
        limit: usize,
    },
    ClaimWork {
        kind: String,
        owner: String,
        limit: usize,
    },
    AcquireLease {
        name: String,
        owner: String,
        lease: Duration,
    },
    Cleanup(Duration),
}

enum Reply<S: Schema> {
    Answer(S::Answer),
    Committed(Result<(), StoreError>),
    Outbox(Vec<OutboxRow>),
    Work(Vec<String>),
    Consumed(bool),
    Claimed(Vec<Claimed>),
    Lease(Option<i64>),
    Cleaned(Cleaned),
    Done,
}

/// What a database node does wrong on purpose.
#[derive(Clone, Debug, Default)]
pub struct DbFaults {
    /// Commit replies lost after the commit, per mille (the outcome is unknown).
    pub lose_reply_per_mille: u32,
    /// Every reply waits this long after its request was served: a slow link back from the
    /// database, so what a read saw may be out of date by the time it arrives.
    pub reply_latency_ms: u64,
    /// More reply latency, switched on and off by the fault injector (`slow`).
    pub slow_ms: Arc<AtomicU64>,
}

/// Serves the database on `addr` from `disk` until the node dies.
/// A recording `journal` gets every commit, under the node's name `name`.
pub async fn serve<S: Schema>(
    name: String,
    addr: SocketAddr,
    disk: DbDisk<S>,
    faults: DbFaults,
    journal: Journal,
) {
    let lose_reply_per_mille = faults.lose_reply_per_mille;
    let handler = move |req: Request<S>, from: SocketAddr| {
        let (disk, journal, name) = (disk.clone(), journal.clone(), name.clone());
        let faults = faults.clone();
        async move {
            let reply = serve_one(req, from, &disk, &journal, name, lose_reply_per_mille);
            let latency_ms = faults.reply_latency_ms + faults.slow_ms.load(Ordering::SeqCst);
            if latency_ms > 0 {
                madsim::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
            }
            reply
        }
    };
    if let Err(e) = crate::rpc::serve(addr, handler).await {
        tracing::error!(%addr, error = %e, "db node stopped serving");
    }
}

/// One request against the disk's state (`None`: no reply).
fn serve_one<S: Schema>(
    req: Request<S>,
    from: SocketAddr,
    disk: &DbDisk<S>,
    journal: &Journal,
    name: String,
    lose_reply_per_mille: u32,
) -> Option<Reply<S>> {
    {
        let Ok(mut state) = disk.lock() else {
            return None;
        };
        let reply: Reply<S> = match req {
            Request::Query(q) => Reply::Answer(state.query(&q)),
            Request::Commit(tx) => {
                let seen = journal.is_on().then(|| {
                    let outbox = tx.outbox.iter().map(|m| (m.topic.clone(), m.key.clone()));
                    (format!("{:?}", tx.writes), outbox.collect::<Vec<_>>())
                });
                let r = state.apply(tx, now_ms());
                if let (Some((writes, outbox)), true) = (seen, r.is_ok()) {
                    journal.commit(|at_ms| Commit {
                        at_ms,
                        db: name,
                        from: from.ip(),
                        writes,
                        outbox,
                    });
                }
                if r.is_ok() && (madsim::rand::random::<u32>() % 1000) < lose_reply_per_mille {
                    // The commit is durable; its answer is lost on the way back.
                    return None;
                }
                Reply::Committed(r)
            }
            Request::OutboxPending { limit } => Reply::Outbox(state.platform.outbox_pending(limit)),
            Request::MarkSent(ids) => {
                state.platform.outbox_mark_sent(&ids, now_ms());
                Reply::Done
            }
            Request::Consumed { consumer, event_id } => {
                Reply::Consumed(state.platform.consumed(&consumer, &event_id))
            }
            Request::ListWork { kind, limit } => {
                Reply::Work(state.platform.list_work(&kind, limit))
            }
            Request::ClaimWork { kind, owner, limit } => {
                Reply::Claimed(state.platform.claim_work(&kind, &owner, limit, now_ms()))
            }
            Request::AcquireLease { name, owner, lease } => {
                Reply::Lease(state.platform.acquire_lease(&name, &owner, lease, now_ms()))
            }
            Request::Cleanup(retention) => {
                Reply::Cleaned(state.platform.cleanup(retention, now_ms()))
            }
        };
        Some(reply)
    }
}

/// The [`Store`] adapter that talks to a DB node.
#[derive(Debug)]
pub struct SimStore<S> {
    pub addr: SocketAddr,
    _schema: std::marker::PhantomData<fn() -> S>,
}

impl<S> Clone for SimStore<S> {
    fn clone(&self) -> Self {
        SimStore::new(self.addr)
    }
}

impl<S> SimStore<S> {
    /// A store on the DB node at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        SimStore {
            addr,
            _schema: std::marker::PhantomData,
        }
    }
}

impl<S: Schema> SimStore<S> {
    async fn call(&self, req: Request<S>) -> Result<Reply<S>, StoreError> {
        match crate::rpc::call::<Request<S>, Option<Reply<S>>>(self.addr, req, REQUEST_TIMEOUT)
            .await
        {
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                // The server dropped the answer: model the lost reply as a timeout.
                madsim::time::sleep(REQUEST_TIMEOUT).await;
                Err(StoreError::Unavailable(
                    "reply lost; commit result unknown".into(),
                ))
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

fn unexpected() -> StoreError {
    StoreError::Fatal("db node answered with an unexpected reply".into())
}

#[async_trait]
impl<S: Schema> Platform for SimStore<S> {
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        match self.call(Request::OutboxPending { limit }).await? {
            Reply::Outbox(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn outbox_mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        match self.call(Request::MarkSent(ids.to_vec())).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }
    async fn consumed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError> {
        let req = Request::Consumed {
            consumer: consumer.into(),
            event_id: event_id.into(),
        };
        match self.call(req).await? {
            Reply::Consumed(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn list_work(&self, kind: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let req = Request::ListWork {
            kind: kind.into(),
            limit,
        };
        match self.call(req).await? {
            Reply::Work(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn claim_work(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let req = Request::ClaimWork {
            kind: kind.into(),
            owner: owner.into(),
            limit,
        };
        match self.call(req).await? {
            Reply::Claimed(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let req = Request::AcquireLease {
            name: name.into(),
            owner: owner.into(),
            lease,
        };
        match self.call(req).await? {
            Reply::Lease(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn cleanup(&self, retention: Duration) -> Result<Cleaned, StoreError> {
        match self.call(Request::Cleanup(retention)).await? {
            Reply::Cleaned(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
}

#[async_trait]
impl<S: Schema> Store<S> for SimStore<S> {
    async fn query(&self, query: S::Query) -> Result<S::Answer, StoreError> {
        match self.call(Request::Query(query)).await? {
            Reply::Answer(a) => Ok(a),
            _ => Err(unexpected()),
        }
    }
    async fn commit(&self, tx: Tx<S::Write>) -> Result<(), StoreError> {
        match self.call(Request::Commit(tx)).await? {
            Reply::Committed(r) => r,
            _ => Err(unexpected()),
        }
    }
}
