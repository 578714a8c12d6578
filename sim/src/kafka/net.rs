//! The model's messaging: [`crate::rpc`] plus the cross-region latency of the seed's two
//! regions, MSK (10.1.0.0/16) and NSK (10.2.0.0/16).
//!
//! Every message between a node in one region and a node in the other is delayed by
//! `cross_region_latency_ms`, one way. The serving side applies both delays — before it handles
//! the request and before it sends the reply — because it is the side that knows both
//! addresses: the request arrives from the caller's node IP, while a calling task (a client on
//! any simulated node) has no way to learn its own IP from madsim. The request delay therefore
//! also delays a request whose caller has already timed out, as a slow link would.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use madsim::time;

use super::config::KafkaModelConfig;
use crate::rpc;

use crate::topology::region_of;

/// The one-way delay of a message between `a` and `b`.
pub(crate) fn one_way_delay(config: &KafkaModelConfig, a: IpAddr, b: IpAddr) -> Duration {
    match (region_of(a), region_of(b)) {
        (Some(x), Some(y)) if x != y => config.cross_region_latency(),
        _ => Duration::ZERO,
    }
}

/// Serves model requests on `addr`, delaying those from the other region (both ways).
pub(crate) async fn serve<Req, Resp, F, Fut>(
    config: Arc<KafkaModelConfig>,
    addr: SocketAddr,
    handler: F,
) -> io::Result<()>
where
    Req: Send + 'static,
    Resp: Send + Sync + 'static,
    F: Fn(Req, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let delayed = move |req: Req, from: SocketAddr| {
        let delay = one_way_delay(&config, addr.ip(), from.ip());
        let handled = handler(req, from);
        async move {
            if !delay.is_zero() {
                time::sleep(delay).await;
            }
            let resp = handled.await;
            if !delay.is_zero() {
                time::sleep(delay).await;
            }
            resp
        }
    };
    rpc::serve(addr, delayed).await
}

/// Sends a model request (the serving side adds the cross-region delay).
pub(crate) async fn call<Req, Resp>(
    dst: SocketAddr,
    req: Req,
    timeout: Duration,
) -> io::Result<Resp>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
{
    rpc::call(dst, req, timeout).await
}
