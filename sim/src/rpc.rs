//! Request/response over madsim's simulated network, carrying in-process values. Every
//! message crosses the simulated links, so partitions, crashes and lost replies reach it:
//! a call that times out after its request was sent has an unknown outcome.

use std::{any::Any, future::Future, io, net::SocketAddr, time::Duration};

use madsim::net::Endpoint;

/// Serves requests of type `Req` on `addr` with `handler` until the node dies.
pub async fn serve<Req, Resp, F, Fut>(addr: SocketAddr, handler: F) -> io::Result<()>
where
    Req: Send + 'static,
    Resp: Send + Sync + 'static,
    F: Fn(Req, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let ep = Endpoint::bind(addr).await?;
    loop {
        let (tx, mut rx, from) = ep.accept1().await?;
        let handler = handler.clone();
        madsim::task::spawn(async move {
            let Ok(payload) = rx.recv().await else { return };
            let Ok(req) = payload.downcast::<Req>() else {
                tracing::error!(%from, "rpc request of an unexpected type");
                return;
            };
            let resp = handler(*req, from).await;
            let _ = tx.send(Box::new(resp)).await;
        });
    }
}

/// Sends `req` to `dst` and waits up to `timeout` for the reply.
pub async fn call<Req, Resp>(dst: SocketAddr, req: Req, timeout: Duration) -> io::Result<Resp>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
{
    let exchange = async {
        let ep = Endpoint::bind("0.0.0.0:0").await?;
        let (tx, mut rx) = ep.connect1(dst).await?;
        tx.send(Box::new(req) as Box<dyn Any + Send + Sync>).await?;
        let payload = rx.recv().await?;
        payload.downcast::<Resp>().map(|b| *b).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "rpc reply of an unexpected type",
            )
        })
    };
    match madsim::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("rpc to {dst} timed out"),
        )),
    }
}
