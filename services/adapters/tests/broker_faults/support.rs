//! One-at-a-time execution and cluster state from metadata (where the servers are and fresh
//! resources come from `tests/common/servers.rs`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use conformance::broker_faults::{ClusterView, PartitionView};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    ClientConfig,
};
use tokio::{
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use crate::servers::kafka_bootstrap;

/// The brokers of the cluster and their racks (`ci/infra/kafka.sh`).
pub const BROKERS: [(i32, &str); 3] = [(1, "msk"), (2, "msk"), (3, "nsk")];

/// Bound on one metadata or watermark request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------ one at a time

/// Tests kill brokers: one runs at a time in this process (tests run on several threads,
/// each with its own runtime; tokio's mutex works across runtimes and does not poison).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A test's exclusive hold on the cluster; prints how long the test took when dropped.
/// Declare it first in a test so it is dropped last (after any [`crate::brokers::Outage`]).
pub struct Exclusive {
    _serial: MutexGuard<'static, ()>,
    name: &'static str,
    started: Instant,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        eprintln!(
            "[broker_faults] {} {outcome} in {:.1?}",
            self.name,
            self.started.elapsed()
        );
    }
}

/// Waits for the other tests of this binary ([`crate::faults::RealFaults::new`] then waits
/// for a healthy cluster).
pub async fn exclusive(name: &'static str) -> Exclusive {
    let serial = SERIAL.lock().await;
    let started = Instant::now();
    eprintln!("[broker_faults] {name} starts");
    Exclusive {
        _serial: serial,
        name,
        started,
    }
}

impl Exclusive {
    /// When the test started (its steps are printed relative to it).
    pub fn started(&self) -> Instant {
        self.started
    }
}

// ------------------------------------------------------------------------------ cluster state

/// Cluster metadata and watermarks, through a group-less librdkafka consumer (the port has
/// neither). A read that fails replaces the client: one whose connections went through a
/// paused (SIGSTOPped) or killed broker can keep failing for a minute (librdkafka goes on
/// with the connections it has), while a new one bootstraps from whichever broker answers.
#[derive(Clone)]
pub struct Cluster {
    client: Arc<std::sync::Mutex<Arc<BaseConsumer>>>,
}

fn metadata_client() -> Arc<BaseConsumer> {
    Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("socket.timeout.ms", "5000")
            .create()
            .expect("a metadata client"),
    )
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            client: Arc::new(std::sync::Mutex::new(metadata_client())),
        }
    }

    fn client(&self) -> Arc<BaseConsumer> {
        Arc::clone(&self.client.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// One metadata request (of `topic` only, if given); `None` when it failed.
    pub async fn view(&self, topic: Option<&str>) -> Option<ClusterView> {
        let client = self.client();
        let topic = topic.map(str::to_owned);
        let metadata = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(topic.as_deref(), METADATA_TIMEOUT)
        })
        .await
        .expect("metadata task");
        let metadata = match metadata {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "metadata read failed; a new client next time");
                *self.client.lock().unwrap_or_else(|e| e.into_inner()) = metadata_client();
                return None;
            }
        };
        let alive = metadata.brokers().iter().map(|b| b.id()).collect();
        let partitions = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| {
                t.partitions().iter().map(|p| PartitionView {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    leader: (p.leader() >= 0).then_some(p.leader()),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                })
            })
            .collect();
        Some(ClusterView { alive, partitions })
    }

    /// The high watermark of each partition of `topic`.
    pub async fn high_watermarks(&self, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let client = self.client();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    let (_low, high) = client
                        .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                        .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
                    (p, high)
                })
                .collect()
        })
        .await
        .expect("watermark task")
    }
}
