//! The media service: photos of ads, uploaded by clients straight to object storage.
//!
//! `CreateUpload` records a PENDING photo and answers a presigned PUT URL whose signature
//! covers the declared content type and length, so storage refuses any other upload. The
//! bytes never pass through the service. `CompleteUpload` asks storage what arrived (`HEAD`)
//! and decides once: READY when it is what was declared, REJECTED (and deleted) otherwise;
//! the gateway then attaches a READY photo to its ad. A sweeper rejects uploads never
//! completed and deletes what they left. Object storage is a port (`objects`): S3's API with
//! presigned URLs, served by any S3-compatible server in production and by `fakes::s3` in
//! the simulation.

mod api;
pub mod objects;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use contracts::media::media_service_server::MediaServiceServer;
use platform::{ports::Store, Mutants, Shutdown};

pub use objects::{ObjectMeta, ObjectStore, ObjectStoreConfig};
pub use store::{MediaModel, MediaQuery, MediaSchema, MediaWrite, Photo};

/// The photo formats accepted.
pub const CONTENT_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// Bounds of uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest photo, in bytes.
    pub photo_bytes_max: i64,
    /// Life of an upload URL.
    pub upload_ttl: Duration,
    /// Life of a download URL.
    pub download_ttl: Duration,
    /// Upload slots one owner may open per `uploads_window`.
    pub uploads_per_window: u32,
    pub uploads_window: Duration,
    /// How long after its URL expired an upload may still be completed, before the sweeper
    /// rejects it.
    pub completion_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            photo_bytes_max: 10 << 20,
            upload_ttl: Duration::from_secs(15 * 60),
            download_ttl: Duration::from_secs(10 * 60),
            uploads_per_window: 60,
            uploads_window: Duration::from_secs(3600),
            completion_grace: Duration::from_secs(3600),
        }
    }
}

/// Media service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    pub objects: ObjectStoreConfig,
    /// Bound on one call to object storage.
    pub objects_timeout: Duration,
    pub limits: Limits,
    /// How often the sweeper looks for abandoned uploads.
    pub sweep_every: Duration,
    /// Deliberate faults for the simulation's checkers; default in production.
    pub mutants: Mutants,
    /// The instance's metrics.
    pub metrics: std::sync::Arc<platform::metrics::Registry>,
    /// Mutual TLS for its gRPC server; `None`: plain.
    pub tls: Option<std::sync::Arc<platform::tls::Tls>>,
}

impl Config {
    /// Production defaults: listening on `listen`, objects in `objects`.
    pub fn new(listen: SocketAddr, objects: ObjectStoreConfig) -> Self {
        Config {
            listen,
            objects,
            objects_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            sweep_every: Duration::from_secs(300),
            mutants: Mutants::default(),
            metrics: platform::metrics::Registry::new(),
            tls: None,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// Runs the media service until `shutdown`.
pub async fn run(
    config: Config,
    store: Arc<dyn Store<MediaSchema>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let objects =
        ObjectStore::new(&config.objects, config.objects_timeout)?.observed(&config.metrics);
    let sweeper = {
        let (store, objects, shutdown) = (store.clone(), objects.clone(), shutdown.clone());
        let (every, grace) = (config.sweep_every, config.limits.completion_grace);
        tokio::spawn(async move {
            while !shutdown.is_requested() {
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match api::sweep(&*store, &objects, grace).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rejected = n, "abandoned uploads swept"),
                    Err(e) => tracing::warn!(error = %e, "sweep failed; the next one retries"),
                }
            }
        })
    };
    let api = api::MediaApi {
        store,
        objects,
        limits: config.limits,
        mutants: config.mutants,
    };
    tracing::info!(listen = %config.listen, "media service up");
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                config.metrics.clone(),
            ))
            .add_service(MediaServiceServer::new(api)),
        config.listen,
        config.tls.clone(),
        shutdown.clone(),
    )
    .await?;
    let _ = sweeper.await;
    Ok(())
}
