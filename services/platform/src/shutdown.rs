//! Graceful shutdown is passed in, never invented inside a service.

use tokio::sync::watch;

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
    async fn never_stays_pending() {
        let never = Shutdown::never();
        assert!(!never.is_requested());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), never.wait()).await;
        assert!(waited.is_err());
    }
}
