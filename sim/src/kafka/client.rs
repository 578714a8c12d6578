//! The client side: the [`EventLog`] port over the model, usable from any simulated node.
//! Clients bootstrap from the brokers (as Kafka clients do), keep the newest metadata image
//! any broker serves, and refresh it after `NOT_LEADER_OR_FOLLOWER` or a connection error.

mod consumer;
mod producer;

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use futures::future::join_all;
use platform::ports::{
    Acks, Consumer, ConsumerConfig, EventLog, EventLogError, Producer, ProducerConfig,
};

use super::{
    config::KafkaModelConfig,
    disk::lock,
    net,
    protocol::{BrokerRequest, BrokerResponse, ClusterMetadata, TopicPartition},
};

pub use consumer::ModelConsumer;
pub use producer::ModelProducer;

/// A write the model acknowledged to a producer: what a checker expects to find in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcknowledgedWrite {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub acks: Acks,
    pub client_id: String,
}

/// Every acknowledged write, in acknowledgement order. Kept by the cluster handle, outside
/// the simulated nodes: it is the checker's record, not the cluster's state.
pub type AckLedger = Arc<Mutex<Vec<AcknowledgedWrite>>>;

/// The [`EventLog`] of one model cluster.
#[derive(Clone)]
pub struct ModelEventLog {
    config: Arc<KafkaModelConfig>,
    /// The cluster's record of acknowledged writes, shared with every producer.
    ledger: AckLedger,
}

impl ModelEventLog {
    pub(crate) fn new(config: Arc<KafkaModelConfig>, ledger: AckLedger) -> Self {
        ModelEventLog { config, ledger }
    }
}

#[async_trait]
impl EventLog for ModelEventLog {
    async fn producer(&self, config: ProducerConfig) -> Result<Arc<dyn Producer>, EventLogError> {
        Ok(Arc::new(ModelProducer::new(
            self.config.clone(),
            config,
            self.ledger.clone(),
        )))
    }

    async fn consumer(
        &self,
        config: ConsumerConfig,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, EventLogError> {
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        Ok(Box::new(ModelConsumer::new(
            self.config.clone(),
            config,
            topics,
        )))
    }
}

/// A client's cached metadata image.
pub(crate) struct MetadataCache {
    config: Arc<KafkaModelConfig>,
    /// Clients prefer brokers of their own rack for metadata.
    client_rack: Option<String>,
    /// The newest image seen; `None` until the first refresh.
    image: Mutex<Option<Arc<ClusterMetadata>>>,
    /// Set after an error that suggests the image is out of date; the next use refreshes.
    stale: AtomicBool,
}

impl MetadataCache {
    pub(crate) fn new(config: Arc<KafkaModelConfig>, client_rack: Option<String>) -> Self {
        MetadataCache {
            config,
            client_rack,
            image: Mutex::new(None),
            stale: AtomicBool::new(false),
        }
    }

    /// Makes the next use refresh the image.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// The cached image, however old, without asking anyone.
    pub(crate) fn cached(&self) -> Option<Arc<ClusterMetadata>> {
        lock(&self.image).clone()
    }

    /// The cached image, fetching one if there is none or it is marked stale.
    pub(crate) async fn get(&self) -> Result<Arc<ClusterMetadata>, EventLogError> {
        if !self.stale.load(Ordering::Relaxed) {
            if let Some(image) = lock(&self.image).clone() {
                return Ok(image);
            }
        }
        self.refresh().await
    }

    /// Asks every broker for its image at once and keeps the newest (a broker cut off from
    /// the controller serves a stale one).
    pub(crate) async fn refresh(&self) -> Result<Arc<ClusterMetadata>, EventLogError> {
        let mut brokers: Vec<_> = self.config.brokers.iter().collect();
        brokers.sort_by_key(|b| Some(&b.rack) != self.client_rack.as_ref());
        let timeout = self.config.client_request_timeout();
        let replies = join_all(brokers.iter().map(|b| {
            let addr = SocketAddr::new(b.ip, self.config.broker_port);
            call_broker(addr, BrokerRequest::Metadata, timeout)
        }))
        .await;
        let newest = replies
            .into_iter()
            .filter_map(|r| match r {
                Ok(BrokerResponse::Metadata(Ok(image))) => Some(image),
                _ => None,
            })
            .max_by_key(|image| image.version);
        let Some(newest) = newest else {
            return Err(EventLogError::Unavailable(
                "no broker answered a metadata request".into(),
            ));
        };
        self.stale.store(false, Ordering::Relaxed);
        let mut cached = lock(&self.image);
        match cached.as_ref() {
            Some(current) if current.version > newest.version => Ok(current.clone()),
            _ => {
                *cached = Some(newest.clone());
                Ok(newest)
            }
        }
    }

    /// The leader of `tp`, refreshing the image when it has none.
    pub(crate) async fn leader(&self, tp: &TopicPartition) -> Result<SocketAddr, EventLogError> {
        let image = self.get().await?;
        if let Some((_, addr)) = image.leader_addr(tp) {
            return Ok(addr);
        }
        let image = self.refresh().await?;
        image
            .leader_addr(tp)
            .map(|(_, addr)| addr)
            .ok_or_else(|| EventLogError::Unavailable(format!("{tp} has no leader")))
    }
}

/// One request to a broker.
pub(crate) async fn call_broker(
    addr: SocketAddr,
    req: BrokerRequest,
    timeout: Duration,
) -> io::Result<BrokerResponse> {
    net::call(addr, req, timeout).await
}

/// Maps a transport error of a request whose outcome is unknown.
pub(crate) fn transport_error(e: &io::Error) -> EventLogError {
    match e.kind() {
        io::ErrorKind::TimedOut => EventLogError::Timeout(e.to_string()),
        _ => EventLogError::Unavailable(e.to_string()),
    }
}
