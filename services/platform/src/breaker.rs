//! The one circuit breaker, put in front of every outbound call (gRPC peers through
//! [`crate::grpc::LazyChannel`], HTTP dependencies through [`crate::http::HttpClient`]).
//!
//! A dependency that keeps failing or answering past its deadline is not asked again for a
//! while: callers are refused at once (and go on through the [retry helper](crate::retry),
//! whose backoff and deadline still bound them) instead of each waiting out a deadline.
//!
//! - **Closed:** calls pass; `failures_to_open` failures in a row open it.
//! - **Open:** calls are refused with the time left; when it has passed, the next call is
//!   let through as the one probe (**half-open**) and every other call is still refused.
//! - The probe's success closes it; its failure opens it again for twice as long (up to
//!   `open_max`), so a dependency that stays down is probed less and less often.
//!
//! Only the dependency's health counts: a failure is what retrying may fix (unreachable,
//! timed out, overloaded, 5xx); an answer that refuses the request itself (a 4xx, `NotFound`,
//! `InvalidArgument`) shows the dependency is up and counts as a success.
//!
//! Deterministic: it reads only the clock (`tokio::time`, the simulated clock under madsim)
//! and draws nothing at random, so a seed replays the same openings.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

/// When a breaker opens and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open a closed breaker.
    pub failures_to_open: u32,
    /// How long the first opening lasts.
    pub open_initial: Duration,
    /// Bound on an opening; each failed probe doubles the last one up to this.
    pub open_max: Duration,
}

impl Default for BreakerPolicy {
    /// Five failures in a row open it for 1 s, then 2, 4, … up to 30 s while probes fail.
    fn default() -> Self {
        BreakerPolicy {
            failures_to_open: 5,
            open_initial: Duration::from_secs(1),
            open_max: Duration::from_secs(30),
        }
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The state as a number for a gauge: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        length: Duration,
    },
    /// A probe is out; `length` is the opening it ended.
    HalfOpen {
        length: Duration,
    },
}

/// A call refused because the breaker is open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{dependency}: circuit open, not asked for {retry_after:?}")]
pub struct Refused {
    /// The breaker's name.
    pub dependency: String,
    /// How long until a probe may go (at least 1 ms).
    pub retry_after: Duration,
}

/// A circuit breaker for one dependency (or one instance of it).
#[derive(Debug)]
pub struct Breaker {
    name: String,
    policy: BreakerPolicy,
    phase: Mutex<Phase>,
    opened: AtomicU64,
    refused: AtomicU64,
}

impl Breaker {
    /// A closed breaker named `name` (the dependency, as logs and metrics show it).
    pub fn new(name: impl Into<String>, policy: BreakerPolicy) -> Self {
        Breaker {
            name: name.into(),
            policy,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            opened: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A closed breaker named `name` with the default policy, to share among callers.
    pub fn shared(name: impl Into<String>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Breaker::new(name, BreakerPolicy::default()))
    }

    /// The dependency's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state now (an open breaker whose time has passed reads as half-open: the next
    /// call probes).
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until, .. } if Instant::now() >= *until => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times it opened (a failed probe opening it again counts).
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// How many calls it refused.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether a call may go now, without taking the probe (for choosing among instances).
    pub fn would_admit(&self) -> bool {
        match &*self.lock() {
            Phase::Closed { .. } => true,
            Phase::Open { until, .. } => Instant::now() >= *until,
            Phase::HalfOpen { .. } => false,
        }
    }

    /// Asks to make a call. The permit records how it went. A permit dropped without a
    /// verdict (its caller went away, say a client that hung up) tells nothing about the
    /// dependency: a probe dropped so hands the probe to the next call.
    pub fn admit(&self) -> Result<Permit<'_>, Refused> {
        let now = Instant::now();
        let mut phase = self.lock();
        let probe = match &*phase {
            Phase::Closed { .. } => false,
            Phase::Open { until, length } if now >= *until => {
                let length = *length;
                *phase = Phase::HalfOpen { length };
                true
            }
            Phase::Open { until, .. } => {
                let retry_after = (*until - now).max(Duration::from_millis(1));
                drop(phase);
                return Err(self.refuse(retry_after));
            }
            Phase::HalfOpen { .. } => {
                drop(phase);
                // The probe's own deadline bounds how long it is out.
                return Err(self.refuse(self.policy.open_initial));
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn refuse(&self, retry_after: Duration) -> Refused {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Refused {
            dependency: self.name.clone(),
            retry_after,
        }
    }

    fn settle(&self, probe: bool, healthy: bool) {
        let mut phase = self.lock();
        match (&*phase, healthy) {
            (_, true) if probe => {
                tracing::info!(dependency = %self.name, "circuit closed: the probe succeeded");
                *phase = Phase::Closed { failures: 0 };
            }
            (Phase::Closed { .. }, true) => *phase = Phase::Closed { failures: 0 },
            (Phase::HalfOpen { length }, false) if probe => {
                let length = length.saturating_mul(2).min(self.policy.open_max);
                self.open(&mut phase, length);
            }
            (Phase::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.policy.failures_to_open {
                    let length = self.policy.open_initial.min(self.policy.open_max);
                    self.open(&mut phase, length);
                } else {
                    *phase = Phase::Closed { failures };
                }
            }
            // A call let through before the breaker opened (or while another probe was
            // out) tells nothing the probe will not.
            _ => {}
        }
    }

    /// A probe went away without a verdict: the next call probes in its place.
    fn release_probe(&self) {
        let mut phase = self.lock();
        if let Phase::HalfOpen { length } = &*phase {
            *phase = Phase::Open {
                until: Instant::now(),
                length: *length,
            };
        }
    }

    fn open(&self, phase: &mut Phase, length: Duration) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(dependency = %self.name, open_for = ?length, "circuit open");
        *phase = Phase::Open {
            until: Instant::now() + length,
            length,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // A panic while holding the lock cannot leave the phase half-written: every
        // update is one assignment.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Leave to make one call; say how it went with [`Permit::succeeded`] or
/// [`Permit::failed`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// The dependency answered (whatever it said about the request itself).
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, true);
    }

    /// The dependency failed to answer usefully (unreachable, late, overloaded).
    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, false);
    }

    /// Records `healthy` as the verdict.
    pub fn record(self, healthy: bool) {
        if healthy {
            self.succeeded()
        } else {
            self.failed()
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures_to_open: 3,
            open_initial: Duration::from_secs(1),
            open_max: Duration::from_secs(4),
        }
    }

    fn fail(b: &Breaker, n: u32) {
        for _ in 0..n {
            b.admit().expect("admitted").failed();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_open_it_and_a_success_in_between_resets_the_count() {
        let b = Breaker::new("psp", policy());
        fail(&b, 2);
        b.admit().expect("admitted").succeeded();
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        let refused = b.admit().expect_err("open");
        assert_eq!(refused.dependency, "psp");
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!((b.opened_total(), b.refused_total()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_opening_one_probe_goes_and_its_success_closes_it() {
        let b = Breaker::new("psp", policy());
        fail(&b, 3);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(b.admit().is_err(), "still open 1 ms before its time");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit().expect("the probe goes");
        assert!(b.admit().is_err(), "only one probe at a time");
        assert!(!b.would_admit());
        probe.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().expect("closed again").succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_opening_up_to_the_bound() {
        let b = Breaker::new("psp", policy());
        fail(&b, 3);
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let until_probe = b.admit().expect_err("open").retry_after;
            lengths.push(until_probe.as_secs());
            tokio::time::advance(until_probe).await;
            b.admit().expect("probe").failed();
        }
        assert_eq!(lengths, [1, 2, 4, 4]);
        assert_eq!(b.opened_total(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_without_a_verdict_hands_the_probe_on() {
        let b = Breaker::new("psp", policy());
        fail(&b, 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(b.admit().expect("probe"));
        let next = b.admit().expect("the next call probes");
        next.failed();
        assert_eq!(
            b.admit().expect_err("open").retry_after,
            Duration::from_secs(2)
        );
        // A plain call dropped without a verdict changes nothing either way.
        let b = Breaker::new("courier", policy());
        fail(&b, 2);
        drop(b.admit().expect("admitted"));
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn late_verdicts_of_calls_let_through_earlier_change_nothing() {
        let b = Breaker::new("psp", policy());
        let early = b.admit().expect("admitted");
        fail(&b, 3);
        early.succeeded();
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "an old success does not close it"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.admit().expect("probe");
        let late = Permit {
            breaker: &b,
            probe: false,
            settled: false,
        };
        late.failed();
        assert_eq!(b.state(), BreakerState::HalfOpen, "only the probe decides");
        probe.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
