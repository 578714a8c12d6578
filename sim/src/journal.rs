//! What a recorded run committed, in simulated time: the raw material of a failure's
//! timeline (`artifacts.rs`). Off by default, so a sweep pays one lock per commit for it;
//! recording only reads what the run does and draws nothing, so a recorded run is the same
//! run as an unrecorded one under the same seed.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// One committed transaction.
#[derive(Clone, Debug)]
pub struct Commit {
    /// Simulated milliseconds since the start of the run.
    pub at_ms: u64,
    /// The database node, e.g. `orders-db`.
    pub db: String,
    /// The node that committed it.
    pub from: IpAddr,
    /// The transaction's writes, as `Debug` prints them.
    pub writes: String,
    /// The events it put in the outbox: `(topic, key)`.
    pub outbox: Vec<(String, String)>,
}

/// The shared journal of one run.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Option<Recording>>>);

struct Recording {
    started: madsim::time::Instant,
    commits: Vec<Commit>,
}

impl Journal {
    /// A journal that records from now on.
    pub fn recording() -> Self {
        Journal(Arc::new(Mutex::new(Some(Recording {
            started: madsim::time::Instant::now(),
            commits: Vec::new(),
        }))))
    }

    /// Whether it records.
    pub fn is_on(&self) -> bool {
        self.0.lock().is_ok_and(|r| r.is_some())
    }

    /// Records a commit made now; `make` is called only when recording.
    pub fn commit(&self, make: impl FnOnce(u64) -> Commit) {
        if let Ok(mut guard) = self.0.lock() {
            if let Some(r) = guard.as_mut() {
                let at_ms = r.started.elapsed().as_millis() as u64;
                r.commits.push(make(at_ms));
            }
        }
    }

    /// Everything recorded, in commit order.
    pub fn commits(&self) -> Vec<Commit> {
        self.0
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.commits.clone()))
            .unwrap_or_default()
    }
}
