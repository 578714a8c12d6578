//! The error policy of every service, in one place.
//!
//! **Types at the boundaries, context inside.** Each boundary has its own `thiserror` enum
//! whose variants say what the caller can do: the ports ([`crate::ports::StoreError`],
//! [`crate::ports::EventLogError`]: retriable or not), a consumer's effect
//! ([`crate::inbox::EffectError`]: poison or retry), a call to a peer (the order saga's
//! `CallError`: refused with a code, or gave up). Inside a service, `anyhow` with
//! `.context("…")` carries the cause chain up to where the error is handled.
//!
//! **Decide on types and codes, never on text.** A caller branches on an enum variant or a
//! gRPC code (`NotFound`: nothing to refund; `Aborted`: retry), never on a message
//! (`to_string().contains(..)` is a bug).
//!
//! **Map once per boundary.**
//! - gRPC servers answer store failures through [`crate::grpc::store_status`]:
//!   `Unavailable` (database down, retry), `Aborted` (lost a race, retry), `Internal` (a bug:
//!   logged there, answered without its text); bad input is `InvalidArgument`, a missing
//!   entity `NotFound`, a state that forbids the call `FailedPrecondition`. Every message
//!   starts with the service's name.
//! - The HTTP edge (the gateway's `problem`) maps gRPC codes to problem+json:
//!   `InvalidArgument` 422, `NotFound` 404, `FailedPrecondition`/`Aborted`/`AlreadyExists`
//!   409, `ResourceExhausted` 429, `Unauthenticated` 401, `PermissionDenied` 403,
//!   `Unavailable`/`DeadlineExceeded` 503 with `Retry-After`; anything else is a 500 whose
//!   body says nothing about the cause ([`crate::http::Problem::internal`]). Malformed
//!   bodies are 400, wrong content types 415 ([`crate::http::ApiJson`]); 412/428 arrive
//!   with conditional requests.
//!
//! **Log once, where handled, at warn or error, with the cause chain** (`{e:#}`): a worker
//! round that fails, a consumer that re-reads, a record dead-lettered, an internal error
//! turned into a 500. Errors passed on to a caller are not logged on the way.
//!
//! **Retry with the one helper.** [`crate::retry::retry`] (backoff, jitter, a permanent /
//! transient split, a budget, cancellation) and [`crate::retry::on_conflict`] for optimistic
//! writes that lost a race; background loops run on [`crate::worker::run_rounds`]. No
//! hand-written retry loops.
//!
//! **A record a consumer cannot process goes to `<topic>.dlq`** with the reason and its
//! origin in headers, and the batch goes on ([`crate::inbox`]).
