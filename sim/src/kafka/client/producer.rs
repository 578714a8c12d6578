//! The producer: key → partition with Kafka's murmur2 partitioner, the request to the
//! partition leader, retries of transient errors until `delivery_timeout` (through the
//! platform's one retry helper), and — with `enable_idempotence` — a producer id and
//! per-partition sequence numbers so a retried batch the leader already has is dropped there
//! instead of written twice.
//!
//! One batch is in flight per partition (`max.in.flight.requests.per.connection=1`), so
//! retries never reorder a key's records. After a send fails with an unknown outcome (or the
//! leader reports its sequence out of order), an idempotent producer bumps its epoch, keeping
//! its producer id, and restarts every partition's sequence at 0 (KIP-360, done locally as
//! Kafka's idempotent producer does): reusing the old sequence could make the leader drop a
//! different record as a duplicate, and the leader fences any request of the older epoch that
//! arrives after the new one (`INVALID_PRODUCER_EPOCH`). At the last epoch it takes a new id.
//!
//! As librdkafka does, an `OUT_OF_ORDER_SEQUENCE_NUMBER` answer to the head-of-line batch
//! (with one batch in flight, every batch) is fatal: the leader lost records this producer
//! had acknowledged (a truncation after data loss), so the producer can no longer reason
//! about ordering or once-ness, and every later send fails with [`EventLogError::Fatal`];
//! its owner must make a new producer. `INVALID_PRODUCER_EPOCH` fails that one send.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use async_trait::async_trait;
use madsim::time::Instant;
use platform::{
    partitioner::partition_for_key,
    ports::{Acks, EventLogError, ProducedRecord, Producer, ProducerConfig, RecordAck},
    retry::{retry, RetryError, RetryPolicy},
    Shutdown,
};

use super::{call_broker, transport_error, AckLedger, AcknowledgedWrite, MetadataCache};
use crate::kafka::{
    config::KafkaModelConfig,
    disk::lock,
    protocol::{
        BrokerRequest, BrokerResponse, ErrorCode, ProduceRequest, ProducerIdentity, ProducerStamp,
        TopicPartition,
    },
};

/// The reason given when `delivery_timeout` cuts an attempt short.
const DELIVERY_TIMEOUT: &str = "delivery timeout";

/// An idempotent producer's sequence state for one partition: the next sequence number of
/// the identity (id and epoch) that last wrote there.
#[derive(Debug, Default)]
struct PartitionSequence {
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: i32,
}

/// A producer of the model (one per [`ProducerConfig`]).
pub struct ModelProducer {
    model: Arc<KafkaModelConfig>,
    config: ProducerConfig,
    /// Shared with the `acks=0` background sends.
    metadata: Arc<MetadataCache>,
    /// Where acknowledged writes are recorded for the checkers.
    ledger: AckLedger,
    /// The producer id and epoch batches are stamped with; `None` before the first idempotent
    /// send (and after the epoch ran out).
    identity: Mutex<Option<ProducerIdentity>>,
    /// Queues sends in call order until each has its place in its partition's queue (the
    /// first sends wait here for metadata), so concurrent sends of one key keep their order.
    call_order: tokio::sync::Mutex<()>,
    /// One async lock (FIFO) per partition: holding it for a whole send (retries included)
    /// keeps one batch in flight per partition, so sequence numbers and key order hold.
    partitions: Mutex<BTreeMap<TopicPartition, Arc<tokio::sync::Mutex<PartitionSequence>>>>,
    /// Lets the retry helper's waits be cut short; producers are dropped, never shut down.
    shutdown: Shutdown,
    /// Set by a fatal error (librdkafka's `rd_kafka_idemp_set_fatal_error`): every send
    /// after it fails with this reason.
    fatal: Mutex<Option<String>>,
}

impl ModelProducer {
    pub(crate) fn new(
        model: Arc<KafkaModelConfig>,
        config: ProducerConfig,
        ledger: AckLedger,
    ) -> Self {
        ModelProducer {
            metadata: Arc::new(MetadataCache::new(
                model.clone(),
                config.client_rack.clone(),
            )),
            model,
            config,
            ledger,
            identity: Mutex::new(None),
            call_order: tokio::sync::Mutex::new(()),
            partitions: Mutex::new(BTreeMap::new()),
            shutdown: Shutdown::never(),
            fatal: Mutex::new(None),
        }
    }

    fn policy(&self, deadline: Duration) -> RetryPolicy {
        RetryPolicy {
            delay_initial: Duration::from_millis(self.model.retry_backoff_ms),
            delay_max: Duration::from_millis(self.model.retry_backoff_max_ms),
            attempts_max: u32::MAX,
            deadline,
            retries: None,
        }
    }

    /// The topic's partition count. A known topic never waits for a refresh, so records are
    /// queued per partition in call order (as Kafka's accumulator does).
    async fn partition_count(&self, topic: &str) -> Result<i32, EventLogError> {
        if let Some(n) = self
            .metadata
            .cached()
            .and_then(|image| image.partition_count(topic))
        {
            return Ok(n);
        }
        let image = self.metadata.refresh().await?;
        image
            .partition_count(topic)
            .ok_or_else(|| EventLogError::UnknownTopic(topic.to_owned()))
    }

    /// The current producer id, asking a broker for one if there is none.
    async fn identity(&self) -> Result<ProducerIdentity, EventLogError> {
        if let Some(id) = *lock(&self.identity) {
            return Ok(id);
        }
        let mut brokers: Vec<_> = self.model.brokers.iter().collect();
        brokers.sort_by_key(|b| Some(&b.rack) != self.config.client_rack.as_ref());
        let mut last = EventLogError::Unavailable("no broker".into());
        for b in brokers {
            let addr = std::net::SocketAddr::new(b.ip, self.model.broker_port);
            match call_broker(
                addr,
                BrokerRequest::InitProducerId,
                self.model.client_request_timeout(),
            )
            .await
            {
                Ok(BrokerResponse::InitProducerId(Ok(id))) => {
                    let mut current = lock(&self.identity);
                    return Ok(*current.get_or_insert(id));
                }
                Ok(_) => last = EventLogError::Unavailable("InitProducerId refused".into()),
                Err(e) => last = transport_error(&e),
            }
        }
        Err(last)
    }

    /// Bumps the epoch of the identity `used` was stamped with (unless a failure elsewhere
    /// bumped it already), so no later batch reuses a sequence number of the old epoch.
    fn bump_epoch(&self, used: ProducerStamp) {
        let mut identity = lock(&self.identity);
        let Some(current) = *identity else { return };
        if current.producer_id != used.producer_id || current.producer_epoch != used.producer_epoch
        {
            return;
        }
        *identity = match current.producer_epoch.checked_add(1) {
            Some(producer_epoch) => {
                tracing::debug!(
                    producer_id = current.producer_id,
                    producer_epoch,
                    "bumping the producer epoch"
                );
                Some(ProducerIdentity {
                    producer_id: current.producer_id,
                    producer_epoch,
                })
            }
            // Out of epochs: the next send takes a new producer id.
            None => None,
        };
    }

    fn partition_slot(&self, tp: &TopicPartition) -> Arc<tokio::sync::Mutex<PartitionSequence>> {
        lock(&self.partitions)
            .entry(tp.clone())
            .or_default()
            .clone()
    }

    /// One produce attempt; keeps in `explained` the last error that says why delivery is
    /// failing (not merely that the delivery timeout cut the attempt short).
    async fn attempt(
        &self,
        tp: &TopicPartition,
        record: &ProducedRecord,
        sequence: &PartitionSequence,
        stamp: &Mutex<Option<ProducerStamp>>,
        explained: &Mutex<Option<EventLogError>>,
        deadline: Instant,
    ) -> Result<i64, EventLogError> {
        let outcome = self
            .attempt_once(tp, record, sequence, stamp, deadline)
            .await;
        match &outcome {
            Err(EventLogError::Timeout(why)) if why == DELIVERY_TIMEOUT => {}
            Err(e) => *lock(explained) = Some(e.clone()),
            Ok(_) => {}
        }
        outcome
    }

    /// One produce request; `stamp` is set on first use and cleared when the leader refuses
    /// its sequence or epoch (the next attempt is stamped with the bumped epoch).
    async fn attempt_once(
        &self,
        tp: &TopicPartition,
        record: &ProducedRecord,
        sequence: &PartitionSequence,
        stamp: &Mutex<Option<ProducerStamp>>,
        deadline: Instant,
    ) -> Result<i64, EventLogError> {
        if let Some(why) = lock(&self.fatal).clone() {
            return Err(EventLogError::Fatal(why));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(EventLogError::Timeout(DELIVERY_TIMEOUT.into()));
        }
        let request_timeout = self.config.request_timeout.min(remaining);
        let clipped = request_timeout < self.config.request_timeout;
        let current_stamp = if self.config.enable_idempotence {
            let existing = *lock(stamp);
            match existing {
                Some(s) => Some(s),
                None => {
                    let id = self.identity().await?;
                    let next = if sequence.producer_id == id.producer_id
                        && sequence.producer_epoch == id.producer_epoch
                    {
                        sequence.next_sequence
                    } else {
                        0
                    };
                    let s = ProducerStamp {
                        producer_id: id.producer_id,
                        producer_epoch: id.producer_epoch,
                        sequence: next,
                    };
                    *lock(stamp) = Some(s);
                    Some(s)
                }
            }
        } else {
            None
        };
        let leader = self.metadata.leader(tp).await?;
        let req = ProduceRequest {
            tp: tp.clone(),
            acks: self.config.acks,
            timeout_ms: request_timeout.as_millis() as u64,
            stamp: current_stamp,
            key: record.key.clone(),
            payload: record.payload.clone(),
            headers: record.headers.clone(),
        };
        match call_broker(leader, BrokerRequest::Produce(req), request_timeout).await {
            Ok(BrokerResponse::Produce(Ok(offset))) => Ok(offset),
            Ok(BrokerResponse::Produce(Err(code))) => {
                Err(self.produce_error(code, current_stamp, stamp).await)
            }
            Ok(_) => Err(EventLogError::Fatal(
                "unexpected reply to a produce request".into(),
            )),
            Err(e) if clipped && e.kind() == std::io::ErrorKind::TimedOut => {
                // Cut short by the delivery timeout: the earlier attempts' errors explain more.
                Err(EventLogError::Timeout(DELIVERY_TIMEOUT.into()))
            }
            Err(e) => {
                self.metadata.mark_stale();
                Err(transport_error(&e))
            }
        }
    }

    async fn produce_error(
        &self,
        code: ErrorCode,
        used: Option<ProducerStamp>,
        stamp: &Mutex<Option<ProducerStamp>>,
    ) -> EventLogError {
        match code {
            ErrorCode::NotEnoughReplicas | ErrorCode::NotEnoughReplicasAfterAppend => {
                EventLogError::NotEnoughReplicas
            }
            ErrorCode::RequestTimedOut => EventLogError::Timeout(code.to_string()),
            ErrorCode::OutOfOrderSequence => {
                let why = format!("{code}: the leader lost this producer's acknowledged records");
                tracing::warn!(producer = %self.config.client_id, "{why}; the producer is broken");
                *lock(&self.fatal) = Some(why.clone());
                EventLogError::Fatal(why)
            }
            ErrorCode::InvalidProducerEpoch => {
                // Fails this send; later sends go under a newer epoch, from sequence 0.
                if let Some(used) = used {
                    self.bump_epoch(used);
                }
                *lock(stamp) = None;
                EventLogError::Fatal(code.to_string())
            }
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::BrokerNotAvailable
            | ErrorCode::UnknownTopicOrPartition => {
                self.metadata.mark_stale();
                EventLogError::Unavailable(code.to_string())
            }
            other => EventLogError::Fatal(other.to_string()),
        }
    }

    /// `acks=0`: hand the record to the leader in the background and return at once.
    fn send_and_forget(&self, tp: TopicPartition, record: ProducedRecord) {
        let metadata = self.metadata.clone();
        let timeout = self.config.request_timeout;
        madsim::task::spawn(async move {
            let Ok(leader) = metadata.leader(&tp).await else {
                return;
            };
            let req = ProduceRequest {
                tp,
                acks: Acks::None,
                timeout_ms: timeout.as_millis() as u64,
                stamp: None,
                key: record.key,
                payload: record.payload,
                headers: record.headers,
            };
            if let Err(e) = call_broker(leader, BrokerRequest::Produce(req), timeout).await {
                tracing::debug!(error = %e, "acks=0 send lost");
            }
        });
    }
}

#[async_trait]
impl Producer for ModelProducer {
    async fn send(&self, record: ProducedRecord) -> Result<RecordAck, EventLogError> {
        if let Some(why) = lock(&self.fatal).clone() {
            return Err(EventLogError::Fatal(why));
        }
        let started = Instant::now();
        let deadline = started + self.config.delivery_timeout;
        let call_order = self.call_order.lock().await;
        let partitions = retry(
            &self.policy(deadline.saturating_duration_since(Instant::now())),
            "kafka metadata",
            &self.shutdown,
            EventLogError::is_retriable,
            |_| self.partition_count(&record.topic),
        )
        .await
        .map_err(final_error)?;
        let tp = TopicPartition::new(
            record.topic.clone(),
            partition_for_key(record.key.as_bytes(), partitions),
        );
        if self.config.acks == Acks::None {
            drop(call_order);
            let partition = tp.partition;
            self.send_and_forget(tp, record);
            return Ok(RecordAck {
                partition,
                offset: -1,
            });
        }

        // Take a place in the partition's queue before letting the next call in.
        let mut acquire = Box::pin(self.partition_slot(&tp).lock_owned());
        let queued = futures::poll!(acquire.as_mut());
        drop(call_order);
        let mut sequence = match queued {
            Poll::Ready(guard) => guard,
            Poll::Pending => acquire.await,
        };
        let stamp: Mutex<Option<ProducerStamp>> = Mutex::new(None);
        let explained: Mutex<Option<EventLogError>> = Mutex::new(None);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = retry(
            &self.policy(remaining),
            "kafka produce",
            &self.shutdown,
            EventLogError::is_retriable,
            |_| self.attempt(&tp, &record, &sequence, &stamp, &explained, deadline),
        )
        .await;
        let used = *lock(&stamp);
        match outcome {
            Ok(offset) => {
                if let Some(s) = used {
                    sequence.producer_id = s.producer_id;
                    sequence.producer_epoch = s.producer_epoch;
                    sequence.next_sequence = s.sequence.wrapping_add(1);
                }
                lock(&self.ledger).push(AcknowledgedWrite {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    key: record.key,
                    payload: record.payload,
                    acks: self.config.acks,
                    client_id: self.config.client_id.clone(),
                });
                Ok(RecordAck {
                    partition: tp.partition,
                    offset,
                })
            }
            Err(e) => {
                if let Some(s) = used {
                    // The batch may or may not be in the log: never reuse its sequence.
                    self.bump_epoch(s);
                }
                let last = final_error(e);
                // Report why delivery failed, not that the last attempt ran out of time.
                Err(lock(&explained).take().unwrap_or(last))
            }
        }
    }
}

fn final_error(e: RetryError<EventLogError>) -> EventLogError {
    e.into_inner()
        .unwrap_or_else(|| EventLogError::Unavailable("producer shut down".into()))
}
