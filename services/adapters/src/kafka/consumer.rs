//! [`KafkaConsumer`]: the [`Consumer`] port on rdkafka's `StreamConsumer`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::FutureExt;
use platform::ports::{ConsumedRecord, Consumer, EventLogError};
use rdkafka::{
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    error::KafkaError,
    message::{BorrowedMessage, Headers, Message},
    Offset, TopicPartitionList,
};

use super::error::event_log_error;

/// A group member subscribed to some topics.
pub struct KafkaConsumer {
    /// Shared with the blocking tasks that run synchronous commits and the final close.
    pub(crate) inner: Option<Arc<StreamConsumer>>,
    /// Subscribed topics, joined, to name them in `UnknownTopic`.
    pub(crate) topics: String,
    /// Most records one `poll` returns.
    pub(crate) records_per_poll_max: usize,
    /// Bound on one synchronous commit.
    pub(crate) commit_timeout: Duration,
    /// An error met after records were already collected, reported by the next `poll`.
    pub(crate) deferred_error: Option<KafkaError>,
}

impl KafkaConsumer {
    fn inner(&self) -> Result<&Arc<StreamConsumer>, EventLogError> {
        self.inner
            .as_ref()
            .ok_or_else(|| EventLogError::Fatal("consumer already closed".into()))
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, EventLogError> {
        if let Some(error) = self.deferred_error.take() {
            return Err(event_log_error("poll", &self.topics, &error));
        }
        let inner = Arc::clone(self.inner()?);
        let mut records = Vec::new();
        let first = match tokio::time::timeout(timeout, inner.recv()).await {
            Err(_elapsed) => return Ok(records),
            Ok(received) => received.map_err(|e| event_log_error("poll", &self.topics, &e))?,
        };
        records.push(consumed(&first));
        drop(first);
        // Then whatever librdkafka has already fetched, without waiting.
        while records.len() < self.records_per_poll_max {
            match inner.recv().now_or_never() {
                None => break,
                Some(Ok(message)) => records.push(consumed(&message)),
                Some(Err(error)) => {
                    self.deferred_error = Some(error);
                    break;
                }
            }
        }
        Ok(records)
    }

    async fn commit(&mut self, records: &[ConsumedRecord]) -> Result<(), EventLogError> {
        // For each partition, the offset after the last record given.
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in records {
            next.insert((r.topic.as_str(), r.partition), r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in &next {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| event_log_error("commit", topic, &e))?;
        }
        let inner = Arc::clone(self.inner()?);
        // A synchronous commit blocks its thread until the coordinator answers.
        // librdkafka's synchronous commit blocks; production adapters never run in the
        // simulation, so a blocking-pool thread is fine here.
        #[allow(clippy::disallowed_methods)]
        let commit = tokio::task::spawn_blocking(move || inner.commit(&offsets, CommitMode::Sync));
        match tokio::time::timeout(self.commit_timeout, commit).await {
            Err(_elapsed) => Err(EventLogError::Timeout(format!(
                "commit took longer than {:?}",
                self.commit_timeout
            ))),
            Ok(Err(join)) => Err(EventLogError::Fatal(format!("commit task failed: {join}"))),
            Ok(Ok(result)) => result.map_err(|e| event_log_error("commit", &self.topics, &e)),
        }
    }
}

impl Drop for KafkaConsumer {
    /// Leaving the group blocks until the coordinator answers (or times out); do it on a
    /// blocking thread when a runtime is around.
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(move || drop(inner));
                }
                Err(_) => drop(inner),
            }
        }
    }
}

fn consumed(message: &BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}
