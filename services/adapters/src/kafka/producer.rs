//! [`KafkaProducer`]: the [`Producer`] port on rdkafka's `FutureProducer`.

use async_trait::async_trait;
use platform::ports::{EventLogError, ProducedRecord, Producer, RecordAck};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};

use super::error::event_log_error;

/// A librdkafka producer; its own thread drives delivery reports.
pub struct KafkaProducer {
    pub(crate) inner: FutureProducer,
    /// How long `send` may wait for room in librdkafka's local queue before it fails.
    pub(crate) queue_timeout: std::time::Duration,
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, record: ProducedRecord) -> Result<RecordAck, EventLogError> {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        );
        let future_record = FutureRecord::to(&record.topic)
            .key(record.key.as_bytes())
            .payload(&record.payload)
            .headers(headers);
        // librdkafka enqueues synchronously on the first poll, so sends started in order are
        // written in order (the idempotent producer keeps that order across retries).
        match self
            .inner
            .send(future_record, Timeout::After(self.queue_timeout))
            .await
        {
            Ok(delivery) => Ok(RecordAck {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((error, _message)) => Err(event_log_error("send", &record.topic, &error)),
        }
    }
}
