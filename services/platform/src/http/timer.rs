//! hyper's timer on the runtime's clock (real tokio, or madsim's simulated one), so a server
//! can bound how long a client takes to send its request head.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

/// A [`hyper::rt::Timer`] whose sleeps are the runtime's (`tokio::time::sleep`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeTimer;

struct RuntimeSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for RuntimeSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for RuntimeSleep {}

impl hyper::rt::Timer for RuntimeTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(RuntimeSleep(Box::pin(tokio::time::sleep(duration))))
    }

    // hyper's deadlines are `std::time::Instant`s; the simulation's clock is the same type
    // (madsim answers `Instant::now` with simulated time), so the difference is right in
    // both worlds.
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(std::time::Instant::now()))
    }
}
