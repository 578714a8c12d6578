//! Fake external providers, small HTTP services the real services call over the network with
//! [`platform::http::HttpClient`], in production-like local runs and in the simulation.
//! Their state is shared with the caller of `run` so checkers can read the money ledger and
//! the shipments after a simulated run.

pub mod courier;
pub mod messenger;
pub mod moderator;
pub mod psp;
pub mod s3;

/// A uniformly random number in `0..1000`, deterministic under madsim (drawn through
/// `getrandom`, which the simulation seeds).
pub(crate) fn per_mille() -> u32 {
    (platform::ids::random_u128() % 1000) as u32
}

/// The `traceparent` a call carried, if any: providers keep it per order so a checker can
/// see that an order's trace reached them.
pub(crate) fn traceparent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(platform::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Idempotency-Key` header a provider requires on a call that acts.
pub(crate) fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> Result<String, platform::http::Problem> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .map(str::to_owned)
        .ok_or_else(|| {
            platform::http::Problem::bad_request(
                "header Idempotency-Key (1..=128 chars) is required",
            )
        })
}
