//! The process's admin listener (`ADMIN_LISTEN`), for an orchestrator's probes:
//!
//! - `GET /healthz` — 200 while the process runs (liveness);
//! - `GET /readyz` — 200 once every service of the process has started and the database
//!   and Kafka (those its services use) answer, else 503 with a problem+json naming what
//!   is not ready (readiness: traffic goes elsewhere meanwhile);
//! - `GET /metrics` — every service's metrics in the Prometheus text format, each sample
//!   labelled with its `service`.
//!
//! It listens from the moment the process starts, before the services do, so a slow start
//! (migrations, a cluster not up yet) is "not ready", not "dead".

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use adapters::{KafkaConfig, KafkaEventLog, PgProbe};
use axum::{extract::State, routing::get, Json, Router};
use platform::{http::Problem, metrics::Registry};
use serde::Serialize;

/// Bound on each dependency's answer to a readiness check.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks.
pub struct Readiness {
    started: AtomicBool,
    database: Option<PgProbe>,
    kafka: Option<String>,
    /// The cluster's client, made on the first check that reaches it.
    kafka_client: tokio::sync::Mutex<Option<KafkaEventLog>>,
}

/// The answer of a ready process.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub database: &'static str,
    pub kafka: &'static str,
}

impl Readiness {
    /// Checks for a process of `services` with `settings`.
    pub fn new(services: &[crate::Service], settings: &crate::Settings) -> anyhow::Result<Self> {
        let database = if services.iter().any(|s| s.0.database.is_some()) {
            Some(PgProbe::new(&settings.database_url)?)
        } else {
            None
        };
        let kafka = services
            .iter()
            .any(|s| s.0.kafka)
            .then(|| settings.kafka_bootstrap.clone());
        Ok(Readiness {
            started: AtomicBool::new(false),
            database,
            kafka,
            kafka_client: tokio::sync::Mutex::new(None),
        })
    }

    /// Every service of the process has started.
    pub fn started(&self) {
        self.started.store(true, Ordering::Release);
    }

    async fn kafka_ready(&self, bootstrap: &str) -> Result<(), String> {
        let mut client = self.kafka_client.lock().await;
        if let Some(c) = client.as_ref() {
            return match tokio::time::timeout(PROBE_TIMEOUT, c.ping()).await {
                Ok(Ok(brokers)) if brokers > 0 => Ok(()),
                Ok(Ok(_)) => Err("no broker listed".into()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
        }
        let mut config = KafkaConfig::new(bootstrap.to_owned());
        config.admin_timeout = PROBE_TIMEOUT;
        match tokio::time::timeout(PROBE_TIMEOUT * 2, KafkaEventLog::connect(config)).await {
            Ok(Ok(c)) => {
                *client = Some(c);
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", PROBE_TIMEOUT * 2)),
        }
    }

    /// Whether the process is ready; the problem says what is not.
    pub async fn check(&self) -> Result<Ready, Problem> {
        if !self.started.load(Ordering::Acquire) {
            return Err(Problem::unavailable("the services are starting"));
        }
        let database = async {
            match &self.database {
                None => Ok("unused"),
                Some(probe) => probe.ping(PROBE_TIMEOUT).await.map(|()| "ok"),
            }
        };
        let kafka = async {
            match &self.kafka {
                None => Ok("unused"),
                Some(bootstrap) => self.kafka_ready(bootstrap).await.map(|()| "ok"),
            }
        };
        let (database, kafka) = tokio::join!(database, kafka);
        let mut down = Vec::new();
        if let Err(e) = &database {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            down.push("the database");
        }
        if let Err(e) = &kafka {
            tracing::warn!(error = %e, "readiness: Kafka does not answer");
            down.push("Kafka");
        }
        match (database, kafka) {
            (Ok(database), Ok(kafka)) => Ok(Ready { database, kafka }),
            _ => Err(Problem::unavailable(format!(
                "not ready: {} does not answer",
                down.join(" and ")
            ))),
        }
    }
}

/// The metrics of the services a process runs: one registry per service.
#[derive(Debug, Default)]
pub struct Metrics {
    registries: std::sync::Mutex<Vec<(String, Arc<Registry>)>>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    /// A new registry for `service`, rendered from now on.
    pub fn register(&self, service: &str) -> Arc<Registry> {
        let registry = Registry::new();
        self.registries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((service.to_owned(), registry.clone()));
        registry
    }

    /// Every registry on one page, each sample labelled with its `service`.
    pub fn render(&self) -> String {
        let registries = self
            .registries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let labels: Vec<[(&str, &str); 1]> = registries
            .iter()
            .map(|(service, _)| [("service", service.as_str())])
            .collect();
        let parts: Vec<(&[(&str, &str)], &Registry)> = labels
            .iter()
            .zip(&registries)
            .map(|(l, (_, r))| (&l[..], &**r))
            .collect();
        platform::metrics::render_page(&parts)
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

/// The admin routes.
pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(scrape))
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(AdminState { readiness, metrics })
}

async fn ready(State(st): State<AdminState>) -> Result<Json<Ready>, Problem> {
    st.readiness.check().await.map(Json)
}

async fn scrape(State(st): State<AdminState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            platform::metrics::CONTENT_TYPE,
        )],
        st.metrics.render(),
    )
}
