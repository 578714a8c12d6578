//! Admission control: the order service takes a new order only while it can finish it.
//!
//! First, a bound on the create requests this instance handles at once: one beyond it is
//! answered `ResourceExhausted` at once instead of queueing for the database until the
//! client times out. Then two gauges, read from the store (shared by every instance) at most
//! every
//! [`GAUGE_MAX_AGE`], and counted up locally by each admission in between so a burst cannot
//! slip through between two reads:
//! - sagas in flight (orders not yet DELIVERED or CANCELLED): beyond the limit the answer is
//!   `ResourceExhausted` — HTTP 429 at the gateway — with a `retry-after-s` hint;
//! - the outbox backlog (status events not yet in Kafka): beyond it Kafka is not keeping up,
//!   and the answer is `Unavailable` — HTTP 503 — with the same hint.
//!
//! The time the gauges' read took is the third signal: beyond [`SLOW_READ`] the database is
//! saturated (its pool or its disk), and new work is refused with `Unavailable`.
//!
//! A store that cannot be read answers `Unavailable` as every store error does. A shed request
//! writes nothing; a retry of an order already created is answered before admission.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use platform::ports::{Platform, StoreError};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tonic::Status;

use crate::domain::ORDERS;

/// How old a gauge reading may be.
pub const GAUGE_MAX_AGE: Duration = Duration::from_millis(200);

/// A gauge read slower than this says the database is saturated.
pub const SLOW_READ: Duration = Duration::from_millis(500);

pub use platform::grpc::RETRY_AFTER_METADATA;

/// The limits (`ORDER_CREATES_IN_FLIGHT_MAX`, `ORDER_SAGAS_IN_FLIGHT_MAX`,
/// `ORDER_OUTBOX_BACKLOG_MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Create requests one instance handles at once.
    pub creates_in_flight_max: usize,
    /// Orders not yet ended, across the fleet.
    pub sagas_in_flight_max: usize,
    /// Status events not yet in Kafka.
    pub outbox_backlog_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Sagas: about 8 s of work at the completion rate `ci/bench-stack` measures on a
        // 2-core machine (75/s), well inside the 30 s payment deadline.
        Limits {
            creates_in_flight_max: 64,
            sagas_in_flight_max: 600,
            outbox_backlog_max: 2_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    in_flight: usize,
    backlog: usize,
    took: Duration,
}

/// One instance's admission gate.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    reading: Mutex<Option<Reading>>,
    creates: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            reading: Mutex::new(None),
            creates: Arc::new(Semaphore::new(limits.creates_in_flight_max.max(1))),
        }
    }

    /// A place among the create requests handled at once, held until the request ends.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.creates.clone().try_acquire_owned().map_err(|_| {
            shed(
                Status::resource_exhausted(format!(
                    "order: {} create requests under way (limit); retry later",
                    self.limits.creates_in_flight_max
                )),
                1,
            )
        })
    }

    /// Admits one new order, or says why not (with a retry hint).
    pub async fn admit(&self, store: &dyn Platform) -> Result<(), Status> {
        let fresh = self.current().filter(|r| r.at.elapsed() < GAUGE_MAX_AGE);
        let reading = match fresh {
            Some(r) => r,
            None => {
                let r = self
                    .read(store)
                    .await
                    .map_err(|e| platform::grpc::store_status("order", e))?;
                if let Ok(mut slot) = self.reading.lock() {
                    *slot = Some(r);
                }
                r
            }
        };
        let Limits {
            sagas_in_flight_max,
            outbox_backlog_max,
            ..
        } = self.limits;
        if reading.in_flight >= sagas_in_flight_max {
            return Err(shed(
                Status::resource_exhausted(format!(
                    "order: {} orders in flight (limit {sagas_in_flight_max}); retry later",
                    reading.in_flight
                )),
                1,
            ));
        }
        if reading.took > SLOW_READ {
            return Err(shed(
                Status::unavailable(format!(
                    "order: the database answered in {} ms; retry later",
                    reading.took.as_millis()
                )),
                2,
            ));
        }
        if reading.backlog >= outbox_backlog_max {
            return Err(shed(
                Status::unavailable(format!(
                    "order: {} status events wait for Kafka (limit {outbox_backlog_max}); retry later",
                    reading.backlog
                )),
                2,
            ));
        }
        // Counted now, so the admissions until the next reading add up.
        if let Ok(mut slot) = self.reading.lock() {
            if let Some(r) = slot.as_mut() {
                r.in_flight += 1;
                r.backlog += 1;
            }
        }
        Ok(())
    }

    fn current(&self) -> Option<Reading> {
        self.reading.lock().ok().and_then(|r| *r)
    }

    async fn read(&self, store: &dyn Platform) -> Result<Reading, StoreError> {
        let started = Instant::now();
        let in_flight = store
            .list_work(ORDERS, self.limits.sagas_in_flight_max)
            .await?
            .len();
        let backlog = store
            .outbox_pending(self.limits.outbox_backlog_max)
            .await?
            .len();
        Ok(Reading {
            at: Instant::now(),
            in_flight,
            backlog,
            took: started.elapsed(),
        })
    }
}

fn shed(mut status: Status, retry_after_s: u32) -> Status {
    if let Ok(v) = retry_after_s.to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER_METADATA, v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_beyond_the_bound_are_refused_at_once_with_a_retry_hint() {
        let a = Admission::new(Limits {
            creates_in_flight_max: 2,
            ..Limits::default()
        });
        let first = a.enter().expect("room");
        let _second = a.enter().expect("room");
        let refused = a.enter().expect_err("full");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let hint = refused
            .metadata()
            .get(RETRY_AFTER_METADATA)
            .and_then(|v| v.to_str().ok());
        assert_eq!(hint, Some("1"));
        drop(first);
        let _again = a.enter().expect("a place is free again");
    }
}
