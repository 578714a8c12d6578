//! Fake external providers, small HTTP services the real services call over the network with
//! [`platform::http::HttpClient`], in production-like local runs and in the simulation.
//! Their state is shared with the caller of `run` so checkers can read the money ledger and
//! the shipments after a simulated run.

pub mod courier;
pub mod moderator;
pub mod psp;
pub mod s3;

/// A uniformly random number in `0..1000`, deterministic under madsim (drawn through
/// `getrandom`, which the simulation seeds).
pub(crate) fn per_mille() -> u32 {
    (platform::ids::random_u128() % 1000) as u32
}
