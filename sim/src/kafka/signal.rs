//! A change counter tasks can wait on. The model uses it instead of `tokio::sync::watch`,
//! whose receivers register with one of several notifiers picked by tokio's own thread-local
//! RNG: the wake-up order then differs between runs and breaks replay by seed. `Notify` wakes
//! its waiters in registration order.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// A version number bumped on every change, and the waiters of the next change.
#[derive(Debug, Default)]
pub struct Signal {
    version: AtomicU64,
    /// Wakes every task waiting in [`Signal::changed_since`].
    notify: Notify,
}

impl Signal {
    /// The current version; pass it to [`Signal::changed_since`] after checking a condition.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Records a change and wakes every waiter.
    pub fn bump(&self) {
        self.version.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    /// Resolves once the version differs from `seen`.
    pub async fn changed_since(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.version() != seen {
                return;
            }
            notified.await;
        }
    }
}
