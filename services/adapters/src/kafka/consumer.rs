//! [`KafkaConsumer`]: the [`Consumer`] port on rdkafka's `StreamConsumer`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::FutureExt;
use platform::ports::{ConsumedRecord, Consumer, EventLogError, LagQuery, PartitionLag};
use rdkafka::{
    admin::AdminClient,
    client::DefaultClientContext,
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
    /// The event log's admin client, which asks leaders for watermarks. Not the consumer's
    /// own connections: a broker answers a connection's requests in order, so a ListOffsets
    /// sent behind the consumer's long-polling Fetch waited up to `fetch.wait.max.ms`
    /// (measured: 200 ms a partition).
    pub(crate) watermarks: Arc<AdminClient<DefaultClientContext>>,
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

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, EventLogError> {
        self.query_lag()?.await
    }

    fn lag_query(&mut self) -> Option<LagQuery> {
        Some(match self.query_lag() {
            Ok(query) => query,
            Err(e) => Box::pin(std::future::ready(Err(e))),
        })
    }
}

impl KafkaConsumer {
    /// The lag query: it holds the consumer's handle, not the member.
    fn query_lag(&self) -> Result<LagQuery, EventLogError> {
        let inner = Arc::clone(self.inner()?);
        let timeout = self.commit_timeout;
        let watermarks = Arc::clone(&self.watermarks);
        let topics = self.topics.clone();
        // The position is the application's (after the last record `poll` returned); before
        // the first record it is the committed offset, and before any commit the log start
        // (where `auto.offset.reset=earliest` begins). The watermarks are asked of each
        // partition's leader. Both block on the broker: a blocking-pool thread, as for
        // commits.
        #[allow(clippy::disallowed_methods)]
        let query =
            tokio::task::spawn_blocking(move || -> Result<Vec<PartitionLag>, KafkaError> {
                let positions = inner.position()?;
                let unknown: Vec<(String, i32)> = positions
                    .elements()
                    .iter()
                    .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                let committed = if unknown.is_empty() {
                    TopicPartitionList::new()
                } else {
                    let mut asked = TopicPartitionList::with_capacity(unknown.len());
                    for (topic, partition) in &unknown {
                        asked.add_partition(topic, *partition);
                    }
                    inner.committed_offsets(asked, timeout)?
                };
                let mut out = Vec::new();
                for e in positions.elements() {
                    let (topic, partition) = (e.topic(), e.partition());
                    let (low, high) = watermarks
                        .inner()
                        .fetch_watermarks(topic, partition, timeout)?;
                    let position = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => match committed
                            .find_partition(topic, partition)
                            .map(|c| c.offset())
                        {
                            Some(Offset::Offset(o)) => o,
                            _ => low,
                        },
                    };
                    out.push(PartitionLag {
                        topic: topic.to_owned(),
                        partition,
                        position,
                        high_watermark: high,
                    });
                }
                out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                Ok(out)
            });
        Ok(Box::pin(async move {
            match tokio::time::timeout(timeout * 2, query).await {
                Err(_elapsed) => Err(EventLogError::Timeout(format!(
                    "watermarks took longer than {:?}",
                    timeout * 2
                ))),
                Ok(Err(join)) => Err(EventLogError::Fatal(format!("lag task failed: {join}"))),
                Ok(Ok(result)) => result.map_err(|e| event_log_error("lag", &topics, &e)),
            }
        }))
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
