//! HTTP that runs unchanged in production and in the simulation: a hyper `serve_connection`
//! loop over `tokio::net::TcpListener` (HTTP/1.1 and HTTP/2 prior-knowledge on one port), a
//! small client over `tokio::net::TcpStream`, and the problem+json error type.

mod client;
pub mod io;
mod problem;
mod serve;

pub use client::{HttpClient, HttpError, HttpResponse, StreamingResponse};
pub use problem::{ApiJson, Problem};
pub use serve::{serve, PeerAddr, SpawnExecutor, CONNECTIONS_MAX};
