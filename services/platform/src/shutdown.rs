//! Graceful shutdown is passed in, never invented inside a service.

use tokio::sync::watch;

/// A cloneable signal that tells tasks to stop. Triggered once by [`ShutdownTrigger`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Watch channel: `true` once shutdown was requested; every clone observes it.
    rx: watch::Receiver<bool>,
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
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// A shutdown that never fires (the simulation kills nodes instead).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for the program's life so `wait` pends forever.
        std::mem::forget(tx);
        Shutdown { rx }
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested (or the trigger is dropped).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl ShutdownTrigger {
    /// Ask every holder of the paired [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}
