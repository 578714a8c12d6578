//! Hints between instances: a publish/subscribe bus with Redis PUB/SUB's promise — **at most
//! once**. A message reaches the subscribers connected when it is published, or nobody (a
//! subscriber that is disconnected, slow to reconnect, or partitioned away misses it, and
//! there is no history). So a hint may only ever *hurry* work that something durable already
//! guarantees: the live-notification service publishes `(recipient, seq)` after committing an
//! update to its log, and every session also checks the log by itself.
//!
//! Adapters: Redis (crate `adapters`), the simulation's Redis model (crate `sim`), and
//! [`LocalHints`] within one process; `conformance::hints` holds them to one suite.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use futures::stream::BoxStream;

/// Why the bus did not take a publish or a subscription.
#[derive(Debug, thiserror::Error)]
pub enum HintsError {
    /// The bus cannot be reached now.
    #[error("hint bus unavailable: {0}")]
    Unavailable(String),
}

/// The messages of a subscription, in publish order. The stream **ends** when the
/// subscription is lost (the connection dropped): the subscriber subscribes again and assumes
/// it missed messages meanwhile.
pub type HintStream = BoxStream<'static, String>;

/// A publish/subscribe bus of text messages on named channels, at most once.
#[async_trait]
pub trait Hints: Send + Sync + 'static {
    /// Publishes `message` on `channel` to the subscribers connected now; returns how many
    /// received it (as Redis's PUBLISH answers; 0 is not an error).
    async fn publish(&self, channel: &str, message: &str) -> Result<u64, HintsError>;
    /// Subscribes to `channel`: once this returns, every later publish reaches the stream
    /// while the subscription lives.
    async fn subscribe(&self, channel: &str) -> Result<HintStream, HintsError>;
}

type Subscribers = BTreeMap<String, Vec<tokio::sync::mpsc::UnboundedSender<String>>>;

/// The bus within one process (tests, one-process deployments): every subscriber of a
/// channel gets every message published after it subscribed.
#[derive(Clone, Debug, Default)]
pub struct LocalHints {
    subscribers: Arc<Mutex<Subscribers>>,
}

#[async_trait]
impl Hints for LocalHints {
    async fn publish(&self, channel: &str, message: &str) -> Result<u64, HintsError> {
        let mut subscribers = self
            .subscribers
            .lock()
            .map_err(|_| HintsError::Unavailable("poisoned".into()))?;
        let Some(list) = subscribers.get_mut(channel) else {
            return Ok(0);
        };
        list.retain(|s| s.send(message.to_owned()).is_ok());
        Ok(list.len() as u64)
    }

    async fn subscribe(&self, channel: &str) -> Result<HintStream, HintsError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .map_err(|_| HintsError::Unavailable("poisoned".into()))?
            .entry(channel.to_owned())
            .or_default()
            .push(tx);
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}
