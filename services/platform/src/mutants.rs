//! Deliberately broken variants ("mutants") that the simulation's checkers must catch.
//! Each switch weakens one guarantee; all are off in production. A checker that never fails
//! on its mutant proves nothing, so every mutant has a test that expects a failure.

use serde::{Deserialize, Serialize};

/// Switches for the services' guarantees. `Default` is the correct system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mutants {
    /// order: commit the status change without an outbox row, then publish it directly
    /// (a dual write: a crash or a Kafka outage between the two loses the event).
    pub publish_without_outbox: bool,
    /// payment: call the PSP with a fresh idempotency key on every attempt, so a retried
    /// charge after a timeout charges again.
    pub psp_call_without_idempotency_key: bool,
    /// order: call payment's Charge with a fresh idempotency key on every attempt.
    pub charge_without_idempotency_key: bool,
}

impl Mutants {
    /// The mutant named `name` (as in scenario files and `ci/mutants`).
    pub fn named(name: &str) -> Option<Mutants> {
        let mut m = Mutants::default();
        match name {
            "publish-without-outbox" => m.publish_without_outbox = true,
            "psp-call-without-idempotency-key" => m.psp_call_without_idempotency_key = true,
            "charge-without-idempotency-key" => m.charge_without_idempotency_key = true,
            _ => return None,
        }
        Some(m)
    }

    /// Every mutant's name.
    pub const NAMES: [&'static str; 3] = [
        "publish-without-outbox",
        "psp-call-without-idempotency-key",
        "charge-without-idempotency-key",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_switches_exactly_one_guarantee() {
        for name in Mutants::NAMES {
            let m = Mutants::named(name).expect("known");
            assert_ne!(m, Mutants::default(), "{name}");
        }
        assert_eq!(Mutants::named("nonsense"), None);
    }
}
