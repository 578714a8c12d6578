//! The one background-loop shape: rounds of work, an idle poll, a wake-up signal, backoff
//! after failures, and shutdown. The outbox relay and the services' PSP/courier workers run
//! on it.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::Notify;

use crate::{retry::RetryPolicy, Shutdown};

/// How a round went.
pub enum Round {
    /// Work was done and more may be waiting: go again at once.
    Busy,
    /// Nothing to do: wait for the idle poll or a wake-up.
    Idle,
}

/// Runs `round` until `shutdown`. After a failure it waits with exponential backoff (100 ms
/// doubling to 2 s, with jitter); a wake-up does not cut that wait short.
pub async fn run_rounds<F, Fut>(
    name: &str,
    idle_poll: Duration,
    wake: Arc<Notify>,
    shutdown: Shutdown,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Round>>,
{
    let backoff = RetryPolicy::forever(Duration::from_millis(100), Duration::from_secs(2));
    let mut failures = 0u32;
    while !shutdown.is_requested() {
        let wait = match round().await {
            Ok(round) => {
                if failures > 0 {
                    tracing::info!(worker = name, failures, "round succeeded again");
                    failures = 0;
                }
                match round {
                    Round::Busy => continue,
                    Round::Idle => idle_poll,
                }
            }
            Err(e) => {
                failures += 1;
                // Once when a streak of failures starts, then every tenth: a long outage
                // does not flood the log, and its end is logged below.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(
                        worker = name,
                        failures,
                        error = format!("{e:#}"),
                        "round failed; backing off"
                    );
                }
                backoff.delay(failures)
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            _ = wake.notified(), if failures == 0 => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn busy_rounds_repeat_at_once_and_failures_back_off_until_shutdown() {
        let (trigger, shutdown) = Shutdown::new();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let trigger = Arc::new(trigger);
        let t = trigger.clone();
        run_rounds(
            "test",
            Duration::from_secs(3600),
            Arc::default(),
            shutdown,
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let t = t.clone();
                async move {
                    match n {
                        0..=2 => Ok(Round::Busy),
                        3 => Err(anyhow::anyhow!("transient")),
                        _ => {
                            t.trigger();
                            Ok(Round::Idle)
                        }
                    }
                }
            },
        )
        .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            5,
            "three busy rounds, one failure, one last round"
        );
    }
}
