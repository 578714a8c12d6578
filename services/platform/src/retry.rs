//! The one retry helper: exponential backoff with jitter, an explicit permanent/transient
//! split, a bound on attempts and on total time, and cancellation by shutdown.

use std::{future::Future, time::Duration};

use crate::{ports::StoreError, Shutdown};

/// How to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub delay_initial: Duration,
    /// Upper bound of one delay.
    pub delay_max: Duration,
    /// Attempts in total, the first included.
    pub attempts_max: u32,
    /// Bound on the time spent, measured from the first attempt.
    pub deadline: Duration,
    /// Counts each retry (each attempt after the first), for a retry rate.
    pub retries: Option<crate::metrics::Counter>,
}

impl RetryPolicy {
    /// A policy for calls between services: 100 ms doubling to 2 s, at most 8 attempts, 20 s.
    pub fn rpc() -> Self {
        RetryPolicy {
            delay_initial: Duration::from_millis(100),
            delay_max: Duration::from_secs(2),
            attempts_max: 8,
            deadline: Duration::from_secs(20),
            retries: None,
        }
    }

    /// A policy for optimistic writes that lost to a concurrent writer: re-read and try
    /// again soon, 5 ms doubling to 80 ms, at most 8 attempts, 2 s.
    pub fn conflicts() -> Self {
        RetryPolicy {
            delay_initial: Duration::from_millis(5),
            delay_max: Duration::from_millis(80),
            attempts_max: 8,
            deadline: Duration::from_secs(2),
            retries: None,
        }
    }

    /// A policy for background loops that keep trying until shutdown.
    pub fn forever(delay_initial: Duration, delay_max: Duration) -> Self {
        RetryPolicy {
            delay_initial,
            delay_max,
            attempts_max: u32::MAX,
            deadline: Duration::MAX,
            retries: None,
        }
    }

    /// The delay after failed attempt number `attempt` (1-based), with full jitter on the
    /// upper half so retrying clients spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .delay_initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
        let capped = exp.min(self.delay_max);
        let half = capped / 2;
        let jitter_ns = (crate::ids::random_u128() as u64) % (half.as_nanos() as u64 + 1);
        half + Duration::from_nanos(jitter_ns)
    }
}

/// Why [`retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The operation failed with an error that retrying cannot fix.
    #[error("{0}")]
    Permanent(E),
    /// Attempts or time ran out; the last error is kept.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: E },
    /// Shutdown was requested while waiting.
    #[error("cancelled by shutdown")]
    Cancelled,
}

impl<E> RetryError<E> {
    /// The underlying error, if any.
    pub fn into_inner(self) -> Option<E> {
        match self {
            RetryError::Permanent(e) | RetryError::Exhausted { last: e, .. } => Some(e),
            RetryError::Cancelled => None,
        }
    }
}

/// Runs `op` (a read, a decision and an optimistic commit) again while it fails with
/// [`StoreError::Conflict`], per [`RetryPolicy::conflicts`]; any other outcome, or the last
/// conflict, is returned as it is.
pub async fn on_conflict<T, F, Fut>(description: &str, op: F) -> Result<T, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let is_conflict = |e: &StoreError| matches!(e, StoreError::Conflict { .. });
    retry(
        &RetryPolicy::conflicts(),
        description,
        &Shutdown::never(),
        is_conflict,
        op,
    )
    .await
    .map_err(|e| match e {
        RetryError::Permanent(e) | RetryError::Exhausted { last: e, .. } => e,
        RetryError::Cancelled => StoreError::Unavailable(format!("{description}: cancelled")),
    })
}

/// Runs `op` until it succeeds, fails permanently (`is_transient` false), or the policy's
/// attempts or deadline run out. Sleeps between attempts are cut short by `shutdown`.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    description: &str,
    shutdown: &Shutdown,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if !is_transient(&e) => return Err(RetryError::Permanent(e)),
            Err(e) => {
                let delay = policy.delay(attempt);
                if attempt >= policy.attempts_max || started.elapsed() + delay > policy.deadline {
                    tracing::warn!(%description, attempt, error = %e, "giving up");
                    return Err(RetryError::Exhausted {
                        attempts: attempt,
                        last: e,
                    });
                }
                if attempt >= 3 {
                    tracing::info!(%description, attempt, error = %e, "retrying");
                }
                if let Some(retries) = &policy.retries {
                    retries.inc();
                }
                tokio::select! {
                biased;
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => return Err(RetryError::Cancelled),
                    }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            delay_initial: Duration::from_millis(1),
            delay_max: Duration::from_millis(4),
            attempts_max: 5,
            deadline: Duration::from_secs(5),
            retries: None,
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let retries = crate::metrics::Counter::default();
        let r: Result<u32, RetryError<String>> = retry(
            &RetryPolicy {
                retries: Some(retries.clone()),
                ..quick()
            },
            "t",
            &Shutdown::never(),
            |_| true,
            |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(format!("fail {n}"))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(retries.get(), 2, "two retries counted");
    }

    #[tokio::test]
    async fn permanent_errors_stop_at_once() {
        let r: Result<(), RetryError<String>> = retry(
            &quick(),
            "t",
            &Shutdown::never(),
            |_| false,
            |_| async { Err("bad".to_owned()) },
        )
        .await;
        assert!(matches!(r, Err(RetryError::Permanent(e)) if e == "bad"));
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let r: Result<(), RetryError<String>> = retry(
            &quick(),
            "t",
            &Shutdown::never(),
            |_| true,
            |n| async move { Err(format!("fail {n}")) },
        )
        .await;
        assert!(matches!(r, Err(RetryError::Exhausted { attempts: 5, .. })));
    }

    #[tokio::test]
    async fn shutdown_cancels_the_wait() {
        let (trigger, shutdown) = Shutdown::new();
        trigger.trigger();
        let slow = RetryPolicy {
            delay_initial: Duration::from_secs(60),
            ..quick()
        };
        let r: Result<(), RetryError<String>> = retry(
            &slow,
            "t",
            &shutdown,
            |_| true,
            |_| async { Err("x".to_owned()) },
        )
        .await;
        assert!(matches!(r, Err(RetryError::Cancelled)));
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::rpc();
        for attempt in 1..20 {
            let d = p.delay(attempt);
            assert!(d <= p.delay_max, "{d:?}");
        }
        assert!(p.delay(1) <= Duration::from_millis(100));
        assert!(p.delay(5) >= Duration::from_millis(800));
    }
}
