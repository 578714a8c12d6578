//! Several instances of one service share its store; this module makes sure each piece of
//! work is done by one of them at a time.
//!
//! - Each instance keeps a **liveness lease** ([`Liveness`]): one row it renews every
//!   `ttl / 3`. Its claims on work items ([`Platform::claim_work`]) last while that lease runs, so
//!   an instance renews one lease, not every record it drives. When an instance dies its lease
//!   runs out and the next claim round of another instance takes its records over, each with a
//!   new fencing token; commits of the dead instance's work (fenced with
//!   [`Tx::expect_claim`](crate::ports::Tx::expect_claim)) are refused from then on.
//! - An instance that cannot renew its lease (cut off from the database) stops its work once
//!   the lease may have run out by its own clock ([`Liveness::is_held`]), before another
//!   instance can take the work over.
//! - A singleton job (the outbox relay) holds a named lease through [`Platform::acquire_lease`].
//!
//! The mutant `work-without-claims` drives every active record on every instance and relays
//! without the lease; the `exclusive-work` checker catches it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    ports::{liveness_lease, Claimed, Platform, StoreError, Tx},
    Shutdown,
};

/// How many claimed items a worker round works on at once (calls to a provider overlap; one
/// slow item does not hold the others up).
pub const WORK_CONCURRENCY_MAX: usize = 32;

/// Runs `f` on every item, at most [`WORK_CONCURRENCY_MAX`] at a time; the results in any
/// order.
pub async fn each_concurrently<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use futures::StreamExt;
    futures::stream::iter(items)
        .map(f)
        .buffer_unordered(WORK_CONCURRENCY_MAX)
        .collect()
        .await
}

/// Default time an instance's claims outlive its last renewal.
pub const LIVENESS_TTL: Duration = Duration::from_secs(10);

/// This instance's liveness lease.
pub struct Liveness {
    store: Arc<dyn Platform>,
    owner: String,
    ttl: Duration,
    /// Until when the lease is surely held by this instance's clock (the renewal's send
    /// time plus the TTL); `None` before the first renewal.
    held_until: Mutex<Option<Instant>>,
    /// Set by the mutant: claims are not used, the lease always counts as held.
    disabled: bool,
}

impl Liveness {
    /// A lease for `owner` (the instance's unique name), not yet taken.
    pub fn new(store: Arc<dyn Platform>, owner: &str, ttl: Duration, disabled: bool) -> Self {
        Liveness {
            store,
            owner: owner.to_owned(),
            ttl,
            held_until: Mutex::new(None),
            disabled,
        }
    }

    /// The liveness lease of the instance `infra` describes, with the default TTL (claims off
    /// under the `work-without-claims` mutant).
    pub fn of<S: crate::ports::Schema>(infra: &crate::Infra<S>) -> Arc<Self> {
        Arc::new(Liveness::new(
            infra.store.clone(),
            &infra.instance,
            LIVENESS_TTL,
            infra.mutants.work_without_claims,
        ))
    }

    /// The instance's name, the owner of its claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether claims are in use (false only under the `work-without-claims` mutant).
    pub fn enabled(&self) -> bool {
        !self.disabled
    }

    /// Whether this instance surely holds its lease now.
    pub fn is_held(&self) -> bool {
        if self.disabled {
            return true;
        }
        self.held_until
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|until| Instant::now() < until)
    }

    /// Renews the lease once; whether it is held.
    pub async fn renew(&self) -> bool {
        if self.disabled {
            return true;
        }
        let sent = Instant::now();
        match self
            .store
            .acquire_lease(&liveness_lease(&self.owner), &self.owner, self.ttl)
            .await
        {
            Ok(Some(_)) => {
                if let Ok(mut g) = self.held_until.lock() {
                    *g = Some(sent + self.ttl);
                }
                true
            }
            Ok(None) => {
                // Another process runs under this instance's name: a configuration error.
                tracing::error!(owner = %self.owner, "liveness lease held by another process with this instance name");
                false
            }
            Err(e) => {
                tracing::warn!(owner = %self.owner, error = %e, "cannot renew the liveness lease");
                false
            }
        }
    }

    /// The active work items of `kind` this instance works on now, at most `limit` new ones
    /// per call: its claims; nothing while its lease is not surely held. (The mutant: every
    /// active item, with token 0.)
    pub async fn work_items(&self, kind: &str, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        if self.disabled {
            let active = self.store.list_work(kind, limit).await?;
            return Ok(active
                .into_iter()
                .map(|key| Claimed { key, token: 0 })
                .collect());
        }
        if !self.is_held() {
            return Ok(Vec::new());
        }
        self.store.claim_work(kind, &self.owner, limit).await
    }

    /// `tx` fenced by this instance's claim `token` on `kind/key` (unfenced under the mutant).
    pub fn fence<W>(&self, tx: Tx<W>, kind: &str, key: &str, token: i64) -> Tx<W> {
        if self.disabled {
            tx
        } else {
            tx.expect_claim(kind, key, &self.owner, token)
        }
    }

    /// `<instance>/<token>`: who did a piece of work under which claim (for headers that a
    /// checker reads).
    pub fn stamp(&self, token: i64) -> String {
        format!("{}/{token}", self.owner)
    }

    /// Renews the lease every `ttl / 3` until `shutdown`.
    pub async fn keep(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            self.renew().await;
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(self.ttl / 3) => {}
            }
        }
    }
}
