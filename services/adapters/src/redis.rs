//! [`RedisHints`]: the hint bus ([`platform::ports::Hints`]) on Redis PUB/SUB (redis-rs).
//!
//! Publishes share one multiplexed connection, made on first use and dropped on an error so
//! the next publish connects again. Each subscription has a connection of its own (Redis
//! puts a subscribing connection in a mode where it can do nothing else); its stream ends
//! when that connection is lost, which is what the port promises.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use platform::ports::{HintStream, Hints, HintsError};
use redis::aio::MultiplexedConnection;

/// Bound on connecting to Redis and on one command.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The hint bus on one Redis server.
pub struct RedisHints {
    client: redis::Client,
    publisher: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

fn error(e: impl std::fmt::Display) -> HintsError {
    HintsError::Unavailable(e.to_string())
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, HintsError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(error),
        Err(_) => Err(HintsError::Unavailable(format!(
            "{what}: no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

impl RedisHints {
    /// The bus at `url` (`redis://host:port`); nothing is connected until first use, so a
    /// service starts while Redis is down (and publishes nothing until it is back).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL {url:?} is not a Redis URL: {e}"))?;
        Ok(RedisHints {
            client,
            publisher: tokio::sync::Mutex::new(None),
        })
    }
}

#[async_trait]
impl Hints for RedisHints {
    async fn publish(&self, channel: &str, message: &str) -> Result<u64, HintsError> {
        let mut slot = self.publisher.lock().await;
        if slot.is_none() {
            *slot = Some(bounded("connect", self.client.get_multiplexed_async_connection()).await?);
        }
        let conn = slot.as_mut().expect("set above");
        let sent = bounded(
            "PUBLISH",
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async::<u64>(conn),
        )
        .await;
        if sent.is_err() {
            *slot = None;
        }
        sent
    }

    async fn subscribe(&self, channel: &str) -> Result<HintStream, HintsError> {
        let mut pubsub = bounded("connect", self.client.get_async_pubsub()).await?;
        bounded("SUBSCRIBE", pubsub.subscribe(channel)).await?;
        Ok(Box::pin(pubsub.into_on_message().filter_map(
            |m| async move {
                match m.get_payload::<String>() {
                    Ok(text) => Some(text),
                    Err(e) => {
                        tracing::warn!(error = %e, "a hint that is not text; skipped");
                        None
                    }
                }
            },
        )))
    }
}
