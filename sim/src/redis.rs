//! A model of Redis PUB/SUB on its own node (`redis`), behind the hint bus port
//! ([`platform::ports::Hints`]); `conformance::hints` holds it and real Redis to one suite.
//!
//! Like Redis, it keeps nothing: a message reaches the subscriptions connected when it is
//! published. Each subscription is one connection (madsim's `connect1`), as in Redis, where a
//! subscribed connection does nothing else. What the simulated network does to it is what a
//! TCP connection suffers:
//! - the node crashes or restarts: every subscription ends (the client sees its stream end)
//!   and the restarted node knows no subscriber;
//! - a link is cut: messages wait on it (madsim's connections retry, as TCP retransmits)
//!   and neither side learns of it — the subscription stays open and silent until the link
//!   heals;
//! - and, with `lose_per_mille`, the server drops a message to a subscriber now and then, as
//!   Redis drops a subscriber whose output buffer overflows: at most once, for real.

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use madsim::net::Endpoint;
use platform::ports::{HintStream, Hints, HintsError};

/// Bound on a publish or a subscription's confirmation, as the Redis adapter's.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The first message of a connection.
#[derive(Debug)]
enum Request {
    Publish { channel: String, message: String },
    Subscribe { channel: String },
}

/// The server's answer to a [`Request`]; a subscription's messages follow as `String`s.
#[derive(Debug)]
enum Reply {
    Published(u64),
    Subscribed,
}

type Subscribers = BTreeMap<String, Vec<tokio::sync::mpsc::UnboundedSender<String>>>;

/// Serves PUB/SUB on `addr` until the node dies (its subscribers die with it), losing
/// `lose_per_mille` of the messages to subscribers (read at each message: the world turns
/// the loss off at heal, as it does every fault).
pub async fn serve(
    addr: SocketAddr,
    lose_per_mille: Arc<std::sync::atomic::AtomicU32>,
) -> io::Result<()> {
    let ep = Endpoint::bind(addr).await?;
    let subscribers: Arc<Mutex<Subscribers>> = Arc::default();
    loop {
        let (tx, mut rx, _from) = ep.accept1().await?;
        let (subscribers, lose_per_mille) = (subscribers.clone(), lose_per_mille.clone());
        madsim::task::spawn(async move {
            let Ok(payload) = rx.recv().await else { return };
            let Ok(request) = payload.downcast::<Request>() else {
                return;
            };
            let lose_per_mille = lose_per_mille.load(std::sync::atomic::Ordering::SeqCst);
            match *request {
                Request::Publish { channel, message } => {
                    let reached = match subscribers.lock() {
                        Ok(mut subs) => subs.get_mut(&channel).map_or(0, |list| {
                            list.retain(|s| {
                                let lost = madsim::rand::random::<u32>() % 1000 < lose_per_mille;
                                lost || s.send(message.clone()).is_ok()
                            });
                            list.len() as u64
                        }),
                        Err(_) => 0,
                    };
                    let _ = tx.send(Box::new(Reply::Published(reached))).await;
                }
                Request::Subscribe { channel } => {
                    let (queue, mut messages) = tokio::sync::mpsc::unbounded_channel();
                    if let Ok(mut subs) = subscribers.lock() {
                        subs.entry(channel).or_default().push(queue);
                    }
                    if tx.send(Box::new(Reply::Subscribed)).await.is_err() {
                        return;
                    }
                    // Until the client goes away (its end closes) or cannot be sent to.
                    loop {
                        tokio::select! {
                            biased;
                            closed = rx.recv() => if closed.is_err() { return },
                            m = messages.recv() => match m {
                                Some(m) => if tx.send(Box::new(m)).await.is_err() { return },
                                None => return,
                            },
                        }
                    }
                }
            }
        });
    }
}

/// The hint bus on the model at `addr`.
#[derive(Clone, Debug)]
pub struct SimHints {
    pub addr: SocketAddr,
}

fn unavailable(e: impl std::fmt::Display) -> HintsError {
    HintsError::Unavailable(e.to_string())
}

#[async_trait]
impl Hints for SimHints {
    async fn publish(&self, channel: &str, message: &str) -> Result<u64, HintsError> {
        let request = Request::Publish {
            channel: channel.into(),
            message: message.into(),
        };
        match crate::rpc::call::<Request, Reply>(self.addr, request, CALL_TIMEOUT).await {
            Ok(Reply::Published(n)) => Ok(n),
            Ok(other) => Err(unavailable(format!("unexpected reply {other:?}"))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<HintStream, HintsError> {
        let connect = async {
            let ep = Endpoint::bind("0.0.0.0:0").await?;
            let (tx, mut rx) = ep.connect1(self.addr).await?;
            tx.send(Box::new(Request::Subscribe {
                channel: channel.into(),
            }))
            .await?;
            match rx.recv().await?.downcast::<Reply>() {
                Ok(r) if matches!(*r, Reply::Subscribed) => Ok((tx, rx)),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not subscribed")),
            }
        };
        let (tx, rx) = madsim::time::timeout(CALL_TIMEOUT, connect)
            .await
            .map_err(|_| unavailable("subscribe: no answer"))?
            .map_err(unavailable)?;
        // The sender lives as long as the stream: dropping the stream closes the connection.
        let stream = futures::stream::unfold((tx, rx), |(tx, mut rx)| async move {
            let payload = rx.recv().await.ok()?;
            let message = payload.downcast::<String>().ok()?;
            Some((*message, (tx, rx)))
        });
        Ok(Box::pin(stream))
    }
}
