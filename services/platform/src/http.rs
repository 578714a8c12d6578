//! HTTP that runs unchanged in production and in the simulation: a hyper `serve_connection`
//! loop over `tokio::net::TcpListener` (HTTP/1.1 and HTTP/2 prior-knowledge on one port), a
//! small client over `tokio::net::TcpStream`, and the problem+json error type.

mod client;
#[cfg(all(feature = "http3", not(madsim)))]
mod h3;
pub mod io;
mod observe;
mod problem;
mod serve;
mod timer;

pub use client::{HttpClient, HttpError, HttpResponse, StreamingResponse};
#[cfg(all(feature = "http3", not(madsim)))]
pub use h3::{advertise_h3, serve_h3, ALT_SVC_MAX_AGE_S, H3_BODY_BYTES_MAX};
pub use observe::{observed, traced};
pub use problem::{ApiJson, Problem};
// Used by the mutual-TLS gRPC listener, which the simulation does not build.
#[cfg_attr(madsim, allow(unused_imports))]
pub(crate) use serve::next_connection;
pub use serve::{
    serve, serve_with, PeerAddr, SpawnExecutor, CONNECTIONS_MAX, HEADERS_MAX, HEADER_BYTES_MAX,
    HEADER_READ_TIMEOUT,
};
pub use timer::RuntimeTimer;
