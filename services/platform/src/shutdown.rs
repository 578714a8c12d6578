//! Graceful shutdown is passed in, never invented inside a service; work in flight (open
//! connections, saga drivers) passes through a [`Gate`] so a shutdown can wait for it.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::Notify;

/// How long a shutdown waits for work in flight to finish before it stops anyway.
pub const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Counts work in flight, so that a shutdown can wait until it is done.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    open: AtomicUsize,
    /// Woken when the last pass is dropped.
    idle: Notify,
}

/// One piece of work in flight; dropping it lets the gate drain.
#[derive(Debug)]
pub struct Pass {
    gate: Arc<GateInner>,
}

impl Gate {
    /// Registers one piece of work until the returned pass is dropped.
    pub fn enter(&self) -> Pass {
        self.inner.open.fetch_add(1, Ordering::SeqCst);
        Pass {
            gate: self.inner.clone(),
        }
    }

    /// How much work is in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight, at most `limit`; whether it drained.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.gate.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.gate.idle.notify_waiters();
        }
    }
}

/// A cloneable signal that tells tasks to stop. Triggered once by [`ShutdownTrigger`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// The shared flag and its waiters; `None` for [`Shutdown::never`]. (Not a `watch`
    /// channel: its waiters pick a notifier with tokio's unseeded RNG, which the simulation
    /// must not touch; `Notify` wakes its waiters in order.)
    signal: Option<Arc<Signal>>,
}

#[derive(Debug, Default)]
struct Signal {
    requested: AtomicBool,
    waiters: Notify,
}

/// The side that requests shutdown; dropping it requests it too.
#[derive(Debug)]
pub struct ShutdownTrigger {
    signal: Arc<Signal>,
}

impl Shutdown {
    /// A new shutdown pair.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let signal = Arc::new(Signal::default());
        (
            ShutdownTrigger {
                signal: signal.clone(),
            },
            Shutdown {
                signal: Some(signal),
            },
        )
    }

    /// A shutdown that never fires (the simulation kills nodes instead).
    pub fn never() -> Shutdown {
        Shutdown { signal: None }
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.signal
            .as_ref()
            .is_some_and(|s| s.requested.load(Ordering::SeqCst))
    }

    /// Resolves once shutdown is requested (or the trigger is dropped).
    pub async fn wait(&self) {
        let Some(signal) = &self.signal else {
            return std::future::pending().await;
        };
        loop {
            let notified = signal.waiters.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trigger between the two is not missed.
            notified.as_mut().enable();
            if signal.requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// [`Shutdown::wait`] as an owned future, for APIs that take one (tonic's
    /// `serve_with_shutdown`).
    pub async fn into_wait(self) {
        self.wait().await
    }
}

impl ShutdownTrigger {
    /// Ask every holder of the paired [`Shutdown`] to stop.
    pub fn trigger(&self) {
        self.signal.requested.store(true, Ordering::SeqCst);
        self.signal.waiters.notify_waiters();
    }
}

impl Drop for ShutdownTrigger {
    fn drop(&mut self) {
        self.trigger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_reaches_every_clone() {
        let (trigger, shutdown) = Shutdown::new();
        let other = shutdown.clone();
        assert!(!shutdown.is_requested());
        trigger.trigger();
        shutdown.wait().await;
        other.wait().await;
        assert!(other.is_requested());
    }

    #[tokio::test]
    async fn a_gate_drains_when_the_last_pass_is_dropped_and_not_before() {
        let gate = Gate::default();
        assert!(
            gate.drained(Duration::from_millis(10)).await,
            "empty at first"
        );
        let a = gate.enter();
        let b = gate.enter();
        assert!(
            !gate.drained(Duration::from_millis(20)).await,
            "two passes out"
        );
        drop(a);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.drained(Duration::from_secs(5)).await }
        });
        drop(b);
        assert!(
            waiter.await.expect("waiter"),
            "drained once both passes are back"
        );
    }

    #[tokio::test]
    async fn never_stays_pending() {
        let never = Shutdown::never();
        assert!(!never.is_requested());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), never.wait()).await;
        assert!(waited.is_err());
    }
}
