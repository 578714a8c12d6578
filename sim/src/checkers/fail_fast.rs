//! Fail fast: while a database behind a service is slow (a `slow` fault), the gateway's
//! circuit breakers open and refuse at once, so clients are not each kept waiting out the
//! whole deadline of a call that is going to fail.
//!
//! Read from what the client saw: every `POST /v1/orders` sent while a database was slow,
//! with its answer and how long it took. A refusal (503) that came only when the gateway's
//! deadline ran out is a *slow refusal*. Before a gateway's breakers open, and for each probe
//! after, slow refusals are expected; once open, refusals come at once. So per slow window:
//!
//! - some requests must have been refused (else the fault did not slow anything down, and
//!   the window proves nothing);
//! - at most [`SLOW_SHARE_MAX_PERCENT`] of the refusals may be slow.
//!
//! With breakers that never open every refusal is slow.

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "fail-fast";

/// A refusal at least this slow waited out the gateway's deadline for its call (3 s,
/// `platform::grpc::UNARY_DEADLINE`), give or take the network.
pub const SLOW_REFUSAL_MS: u64 = 2_500;

/// Bound on the share of a slow window's refusals that are slow. Measured on
/// `order-database-slow` over seeds 1-30: 28-47 % with the breakers, 78-95 % with breakers
/// that never open (each gateway's two order instances take 5 slow failures before their
/// breakers open, then one slow probe per opening of 1, 2, 4, … s).
pub const SLOW_SHARE_MAX_PERCENT: usize = 60;

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    for w in &state.slow_windows {
        let refused: Vec<u64> = state
            .order_attempts
            .iter()
            .filter(|a| (w.from_ms..w.to_ms).contains(&a.sent_ms) && a.status == 503)
            .map(|a| a.answered_ms.saturating_sub(a.sent_ms))
            .collect();
        let slow = refused.iter().filter(|&&ms| ms >= SLOW_REFUSAL_MS).count();
        let window = format!(
            "while {} was slow ({} ms to {} ms)",
            w.node, w.from_ms, w.to_ms
        );
        if refused.is_empty() {
            out.push(Violation {
                checker: NAME,
                detail: format!(
                    "{window} the gateway refused no order request: the fault slowed nothing \
                     down, so the run shows nothing about failing fast"
                ),
            });
        } else if slow * 100 > refused.len() * SLOW_SHARE_MAX_PERCENT {
            out.push(Violation {
                checker: NAME,
                detail: format!(
                    "{window} {slow} of the gateway's {} refusals came only after its deadline \
                     (>= {SLOW_REFUSAL_MS} ms; at most {SLOW_SHARE_MAX_PERCENT}% may): its \
                     circuit breakers did not refuse at once",
                    refused.len()
                ),
            });
        }
    }
    out
}

/// A time a database node was slow, in ms since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowWindow {
    pub node: String,
    pub from_ms: u64,
    pub to_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Attempt;

    fn attempt(sent_ms: u64, took_ms: u64, status: u16) -> Attempt {
        Attempt {
            gateway: "g".into(),
            sent_ms,
            answered_ms: sent_ms + took_ms,
            status,
        }
    }

    fn state(attempts: Vec<Attempt>) -> FinalState {
        FinalState {
            slow_windows: vec![SlowWindow {
                node: "orders-db".into(),
                from_ms: 1_000,
                to_ms: 20_000,
            }],
            order_attempts: attempts,
            ..FinalState::default()
        }
    }

    #[test]
    fn refusals_mostly_at_once_pass_and_mostly_after_the_deadline_fail() {
        let fast = state(vec![
            attempt(2_000, 3_000, 503),
            attempt(6_000, 5, 503),
            attempt(7_000, 5, 503),
            attempt(30_000, 3_000, 503), // after the window
            attempt(8_000, 3_000, 201),  // an order that went through slowly
        ]);
        assert_eq!(check(&fast), vec![]);
        let slow = state(vec![
            attempt(2_000, 3_000, 503),
            attempt(6_000, 3_000, 503),
            attempt(7_000, 5, 503),
        ]);
        let v = check(&slow);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].detail.contains("2 of the gateway's 3 refusals"),
            "{v:?}"
        );
    }

    #[test]
    fn a_window_that_refused_nothing_proves_nothing() {
        let v = check(&state(vec![attempt(2_000, 40, 201)]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("refused no order request"), "{v:?}");
        assert_eq!(
            check(&FinalState::default()),
            vec![],
            "no slow window: nothing to check"
        );
    }
}
