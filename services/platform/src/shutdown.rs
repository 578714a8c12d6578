//! Graceful shutdown is passed in, never invented inside a service; work in flight (open
//! connections, saga drivers) passes through a [`Gate`] so a shutdown can wait for it.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{watch, Notify};

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
    /// Watch channel: `true` once shutdown was requested; every clone observes it. `None`
    /// for [`Shutdown::never`], which registers no waiter at all (a watch channel picks one
    /// of its notifiers with tokio's unseeded RNG, which the simulation must not touch).
    rx: Option<watch::Receiver<bool>>,
}

/// The side that requests shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger {
    /// Sender half of the shutdown watch channel; dropping it also stops every listener.
    tx: watch::Sender<bool>,
}

impl Shutdown {
    /// A new shutdown pair.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx: Some(rx) })
    }

    /// A shutdown that never fires (the simulation kills nodes instead).
    pub fn never() -> Shutdown {
        Shutdown { rx: None }
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once shutdown is requested (or the trigger is dropped).
    pub async fn wait(&self) {
        let Some(mut rx) = self.rx.clone() else {
            return std::future::pending().await;
        };
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
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
        let _ = self.tx.send(true);
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
