//! The Postgres model: one DB node per service database, reached over the simulated network.
//!
//! The node applies each transaction atomically to a [`MemoryState`] that lives on its
//! "disk" (outside the node's tasks), so committed data survive a node kill and restart.
//! A transaction travels as one message; a lost reply is "commit result unknown", which the
//! client sees as [`StoreError::Unavailable`]. `lose_reply_per_mille` injects exactly that
//! fault: the commit happens and the answer is dropped.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use platform::{
    ports::{Claimed, Cleaned, OutboxRow, Store, StoreError, Tx, Versioned},
    store::{now_ms, MemoryState},
};

/// A database's durable state.
pub type DbDisk = Arc<Mutex<MemoryState>>;

/// Bound on one request to a DB node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

enum Request {
    Get {
        table: String,
        key: String,
    },
    ListActive {
        table: String,
        limit: usize,
    },
    Commit(Tx),
    OutboxPending {
        limit: usize,
    },
    MarkSent(Vec<i64>),
    ClaimActive {
        table: String,
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

enum Reply {
    Record(Option<Versioned>),
    Records(Vec<(String, Versioned)>),
    Committed(Result<(), StoreError>),
    Outbox(Vec<OutboxRow>),
    Claimed(Vec<Claimed>),
    Lease(Option<i64>),
    Cleaned(Cleaned),
    Done,
}

/// Serves the database on `addr` from `disk` until the node dies.
pub async fn serve(addr: SocketAddr, disk: DbDisk, lose_reply_per_mille: u32) {
    let handler = move |req: Request, _from: SocketAddr| {
        let disk = disk.clone();
        async move {
            let Ok(mut state) = disk.lock() else {
                return None;
            };
            let reply = match req {
                Request::Get { table, key } => Reply::Record(state.get(&table, &key)),
                Request::ListActive { table, limit } => {
                    Reply::Records(state.list_active(&table, limit))
                }
                Request::Commit(tx) => {
                    let r = state.apply(tx, now_ms());
                    if r.is_ok() && (madsim::rand::random::<u32>() % 1000) < lose_reply_per_mille {
                        // The commit is durable; its answer is lost on the way back.
                        return None;
                    }
                    Reply::Committed(r)
                }
                Request::OutboxPending { limit } => Reply::Outbox(state.outbox_pending(limit)),
                Request::MarkSent(ids) => {
                    state.outbox_mark_sent(&ids, now_ms());
                    Reply::Done
                }
                Request::ClaimActive {
                    table,
                    owner,
                    limit,
                } => Reply::Claimed(state.claim_active(&table, &owner, limit, now_ms())),
                Request::AcquireLease { name, owner, lease } => {
                    Reply::Lease(state.acquire_lease(&name, &owner, lease, now_ms()))
                }
                Request::Cleanup(retention) => Reply::Cleaned(state.cleanup(retention, now_ms())),
            };
            Some(reply)
        }
    };
    if let Err(e) = crate::rpc::serve(addr, handler).await {
        tracing::error!(%addr, error = %e, "db node cannot serve");
    }
}

/// The [`Store`] adapter that talks to a DB node.
#[derive(Clone, Debug)]
pub struct SimStore {
    pub addr: SocketAddr,
}

impl SimStore {
    async fn call(&self, req: Request) -> Result<Reply, StoreError> {
        match crate::rpc::call::<Request, Option<Reply>>(self.addr, req, REQUEST_TIMEOUT).await {
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
impl Store for SimStore {
    async fn get(&self, table: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self
            .call(Request::Get {
                table: table.into(),
                key: key.into(),
            })
            .await?
        {
            Reply::Record(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn list_active(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        match self
            .call(Request::ListActive {
                table: table.into(),
                limit,
            })
            .await?
        {
            Reply::Records(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
    async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        match self.call(Request::Commit(tx)).await? {
            Reply::Committed(r) => r,
            _ => Err(unexpected()),
        }
    }
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
    async fn claim_active(
        &self,
        table: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let req = Request::ClaimActive {
            table: table.into(),
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
