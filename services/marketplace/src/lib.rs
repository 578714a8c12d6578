//! Wiring of the production process: settings from the environment, production adapters,
//! and the service table's entry points (`wiring::run_service`, which the simulation calls
//! too). `main.rs` and the real-stack tests both use it.

pub mod admin;
pub mod deploy;

use std::{any::Any, collections::BTreeMap, net::SocketAddr, str::FromStr, sync::Arc};

use adapters::{postgres::PgSchema, KafkaConfig, KafkaEventLog, PgStore, SchemaName};
use anyhow::Context;
use platform::{
    ports::{ProducerConfig, Schema, Store},
    Infra, Mutants, Shutdown,
};
use wiring::{Env, ServiceSpec, SERVICES};

/// A service this binary can run: a row of the service table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service(pub &'static ServiceSpec);

impl Service {
    /// Every service, in start order (dependencies first).
    pub fn all() -> Vec<Service> {
        SERVICES.iter().map(Service).collect()
    }
}

impl FromStr for Service {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        wiring::spec(s).map(Service).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown service {s:?}: expected {} or all",
                wiring::names().join(", ")
            )
        })
    }
}

/// Process settings, from the environment with local defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `SCHEMA_PREFIX`: prefixes each service's Postgres schema and consumer group (tests use
    /// a fresh one).
    pub schema_prefix: String,
    /// `KAFKA_BOOTSTRAP`.
    pub kafka_bootstrap: String,
    /// `CLIENT_RACK`: the Kafka `client.rack` of this process (`msk` or `nsk`).
    pub client_rack: String,
    /// `INSTANCE_ID`: tells this process's service instances apart from other processes'
    /// instances of the same services (each instance is `<service>-<id>`). The default is
    /// drawn at start (random, with the process id), because two running processes must
    /// never share one: in containers every process id is 1.
    pub instance_id: String,
    /// `<SERVICE>_LISTEN` for each service (default `127.0.0.1:<its port in the table>`) and
    /// `<SERVICE>_HTTP_LISTEN` for the HTTP listener of a service that has one beside its gRPC
    /// one (`PAYMENT_HTTP_LISTEN`: the PSP webhook; `NOTIFICATION_HTTP_LISTEN`: SSE and
    /// WebSocket), keyed `<service>-http`.
    pub listen: BTreeMap<String, SocketAddr>,
    /// `<SERVICE>_URLS`: comma-separated URLs of a service's instances, when it runs in other
    /// processes (default: `http://` + its listen address here).
    pub urls: BTreeMap<String, String>,
    /// Fake PSP behaviour (`PSP_DECLINE_PER_MILLE`, `PSP_TIMEOUT_PER_MILLE`).
    pub psp: fakes::psp::PspConfig,
    /// Fake courier behaviour (`COURIER_FAIL_PER_MILLE`, `COURIER_STAGE_MS`).
    pub courier: fakes::courier::CourierConfig,
    /// Fake messaging provider behaviour (`MESSENGER_FAIL_PER_MILLE`,
    /// `MESSENGER_LATE_PER_MILLE`).
    pub messenger: fakes::messenger::MessengerConfig,
    /// Admission control of new orders (`ORDER_CREATES_IN_FLIGHT_MAX`,
    /// `ORDER_SAGAS_IN_FLIGHT_MAX`, `ORDER_OUTBOX_BACKLOG_MAX`).
    pub order_limits: order::Limits,
    /// The argon2id cost of new password hashes (`USER_ARGON2_MEMORY_KIB`,
    /// `USER_ARGON2_ITERATIONS`; default OWASP's 19 MiB, 2 passes).
    pub password_cost: user::PasswordCost,
    /// Where photos are kept: `S3_ENDPOINT` (default: the fake object store this process
    /// serves as `s3`), `S3_BUCKET`, `S3_REGION`, `S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY` (defaults: the fake's development credentials).
    pub object_store: media::ObjectStoreConfig,
    /// The fake object store (`marketplace serve s3`), for development without S3: it takes
    /// the bucket, region and credentials of `object_store`.
    pub s3: fakes::s3::S3Config,
    /// `MODERATION_PROVIDER_URL`: the external moderation provider the workers call (e.g.
    /// the fake `marketplace serve moderator`); unset, the workers decide by the rules.
    pub moderation_provider: Option<String>,
    /// The fake moderation provider's behaviour (`MODERATOR_FAIL_PER_MILLE`,
    /// `MODERATOR_LATENCY_MS`).
    pub moderator: fakes::moderator::ModeratorConfig,
    /// The moderation workers' tuning (`MODERATION_TASK_ATTEMPTS`,
    /// `MODERATION_PROVIDER_TIMEOUT_MS`).
    pub moderation: moderation::Tuning,
    /// `KAFKA_MAX_POLL_INTERVAL_MS`: Kafka `max.poll.interval.ms` of every consumer.
    pub max_poll_interval: std::time::Duration,
    /// `REDIS_URL`: the Redis server of the hint bus (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// `ADMIN_LISTEN`: where the process answers `/healthz` and `/readyz` (none if unset).
    pub admin_listen: Option<SocketAddr>,
    /// Mutual TLS between services: `TLS_CERT_FILE`, `TLS_KEY_FILE` and `TLS_CA_FILE`
    /// (all three, or none: plain gRPC).
    pub mesh_tls: Option<Arc<platform::tls::Tls>>,
    /// TLS at the edge (the gateway, the notification service's SSE/WebSocket port):
    /// `EDGE_TLS_CERT_FILE` and `EDGE_TLS_KEY_FILE` (both, or none: plain HTTP).
    pub edge_tls: Option<Arc<platform::tls::Tls>>,
    /// `EDGE_H3_LISTEN`: the gateway's HTTP/3 address (UDP); needs the edge TLS variables
    /// and a build with the `http3` feature.
    pub h3_listen: Option<SocketAddr>,
    /// `OTEL_TRACES_EXPORTER` (`none`, the default; `console`: one log line per span;
    /// `otlp`: OTLP/HTTP JSON to `OTEL_EXPORTER_OTLP_ENDPOINT`, default
    /// `http://127.0.0.1:4318`).
    pub traces: Option<platform::trace::export::Exporter>,
    /// `OTEL_SERVICE_NAME`: the `service.name` spans are exported under (default: the
    /// services this process runs, joined with `+`).
    pub trace_service_name: Option<String>,
}

/// The key of `service`'s HTTP listener (beside its gRPC one) in [`Settings::listen`].
pub fn http_key(service: &str) -> String {
    format!("{service}-http")
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_parse<T: FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Settings {
    /// Reads the environment; unset variables take the local defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut psp = fakes::psp::PspConfig::default();
        psp.decline_per_mille = env_parse("PSP_DECLINE_PER_MILLE", psp.decline_per_mille)?;
        psp.timeout_per_mille = env_parse("PSP_TIMEOUT_PER_MILLE", psp.timeout_per_mille)?;
        let mut courier = fakes::courier::CourierConfig::default();
        courier.fail_per_mille = env_parse("COURIER_FAIL_PER_MILLE", courier.fail_per_mille)?;
        courier.stage_ms = env_parse("COURIER_STAGE_MS", courier.stage_ms)?;
        let mut messenger = fakes::messenger::MessengerConfig::default();
        messenger.fail_per_mille = env_parse("MESSENGER_FAIL_PER_MILLE", messenger.fail_per_mille)?;
        messenger.late_per_mille = env_parse("MESSENGER_LATE_PER_MILLE", messenger.late_per_mille)?;
        let defaults = order::Limits::default();
        let order_limits = order::Limits {
            creates_in_flight_max: env_parse(
                "ORDER_CREATES_IN_FLIGHT_MAX",
                defaults.creates_in_flight_max,
            )?,
            sagas_in_flight_max: env_parse(
                "ORDER_SAGAS_IN_FLIGHT_MAX",
                defaults.sagas_in_flight_max,
            )?,
            outbox_backlog_max: env_parse("ORDER_OUTBOX_BACKLOG_MAX", defaults.outbox_backlog_max)?,
        };
        anyhow::ensure!(
            order_limits.creates_in_flight_max > 0
                && order_limits.sagas_in_flight_max > 0
                && order_limits.outbox_backlog_max > 0,
            "ORDER_CREATES_IN_FLIGHT_MAX, ORDER_SAGAS_IN_FLIGHT_MAX and ORDER_OUTBOX_BACKLOG_MAX must be positive"
        );
        let defaults = user::PasswordCost::PRODUCTION;
        let password_cost = user::PasswordCost {
            memory_kib: env_parse("USER_ARGON2_MEMORY_KIB", defaults.memory_kib)?,
            iterations: env_parse("USER_ARGON2_ITERATIONS", defaults.iterations)?,
            ..defaults
        };
        password_cost
            .validate()
            .map_err(|e| anyhow::anyhow!("USER_ARGON2_MEMORY_KIB / USER_ARGON2_ITERATIONS: {e}"))?;
        let fake_s3 = fakes::s3::S3Config::default();
        let mut listen = BTreeMap::new();
        let mut urls = BTreeMap::new();
        for s in SERVICES.iter().filter(|s| s.port != 0) {
            let upper = s.name.to_uppercase();
            listen.insert(
                s.name.to_owned(),
                env_parse(&format!("{upper}_LISTEN"), loopback(s.port))?,
            );
            if let Ok(v) = std::env::var(format!("{upper}_URLS")) {
                urls.insert(s.name.to_owned(), v);
            }
            if let Some(port) = s.http_port {
                listen.insert(
                    http_key(s.name),
                    env_parse(&format!("{upper}_HTTP_LISTEN"), loopback(port))?,
                );
            }
        }
        let object_store = media::ObjectStoreConfig {
            endpoint: env_or(
                "S3_ENDPOINT",
                &format!(
                    "http://{}",
                    listen.get("s3").copied().unwrap_or_else(|| loopback(9000))
                ),
            ),
            bucket: env_or("S3_BUCKET", &fake_s3.buckets[0]),
            region: env_or("S3_REGION", &fake_s3.region),
            access_key: env_or("S3_ACCESS_KEY_ID", &fake_s3.access_key),
            secret_key: env_or("S3_SECRET_ACCESS_KEY", &fake_s3.secret_key),
        };
        let s3 = fakes::s3::S3Config {
            access_key: object_store.access_key.clone(),
            secret_key: object_store.secret_key.clone(),
            region: object_store.region.clone(),
            buckets: vec![object_store.bucket.clone()],
            ..fake_s3
        };
        let mut moderator = fakes::moderator::ModeratorConfig::default();
        moderator.fail_per_mille = env_parse("MODERATOR_FAIL_PER_MILLE", moderator.fail_per_mille)?;
        moderator.latency_ms = env_parse("MODERATOR_LATENCY_MS", moderator.latency_ms)?;
        let defaults = moderation::Tuning::default();
        let moderation = moderation::Tuning {
            task_attempts: env_parse("MODERATION_TASK_ATTEMPTS", defaults.task_attempts)?,
            provider_call: std::time::Duration::from_millis(env_parse(
                "MODERATION_PROVIDER_TIMEOUT_MS",
                defaults.provider_call.as_millis() as u64,
            )?),
        };
        anyhow::ensure!(
            moderation.task_attempts >= 1,
            "MODERATION_TASK_ATTEMPTS must be at least 1"
        );
        let max_poll_interval = std::time::Duration::from_millis(env_parse(
            "KAFKA_MAX_POLL_INTERVAL_MS",
            platform::ports::MAX_POLL_INTERVAL_DEFAULT.as_millis() as u64,
        )?);
        let session_timeout = platform::ports::ConsumerConfig::new("").session_timeout;
        anyhow::ensure!(
            max_poll_interval >= session_timeout,
            "KAFKA_MAX_POLL_INTERVAL_MS must be at least the consumers' session timeout ({} ms)",
            session_timeout.as_millis()
        );
        Ok(Settings {
            database_url: env_or(
                "DATABASE_URL",
                "postgres://marketplace:marketplace@127.0.0.1:5432/marketplace",
            ),
            schema_prefix: env_or("SCHEMA_PREFIX", ""),
            kafka_bootstrap: env_or(
                "KAFKA_BOOTSTRAP",
                "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094",
            ),
            client_rack: env_or("CLIENT_RACK", "msk"),
            instance_id: env_or(
                "INSTANCE_ID",
                &format!(
                    "{}-{:08x}",
                    std::process::id(),
                    platform::ids::random_u128() as u32
                ),
            ),
            listen,
            urls,
            psp,
            courier,
            messenger,
            order_limits,
            password_cost,
            object_store,
            s3,
            moderation_provider: std::env::var("MODERATION_PROVIDER_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            moderator,
            moderation,
            max_poll_interval,
            redis_url: env_or("REDIS_URL", "redis://127.0.0.1:6379"),
            traces: platform::trace::export::Exporter::parse(
                &env_or("OTEL_TRACES_EXPORTER", "none"),
                &env_or("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            )
            .map_err(|e| anyhow::anyhow!("OTEL_TRACES_EXPORTER: {e}"))?,
            trace_service_name: std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|n| !n.is_empty()),
            admin_listen: match std::env::var("ADMIN_LISTEN") {
                Ok(v) if !v.is_empty() => Some(
                    v.parse()
                        .map_err(|e| anyhow::anyhow!("ADMIN_LISTEN={v:?}: {e}"))?,
                ),
                _ => None,
            },
            mesh_tls: tls_from_env(&["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"])?,
            edge_tls: tls_from_env(&["EDGE_TLS_CERT_FILE", "EDGE_TLS_KEY_FILE"])?,
            h3_listen: match std::env::var("EDGE_H3_LISTEN") {
                Ok(v) if !v.is_empty() => Some(
                    v.parse()
                        .map_err(|e| anyhow::anyhow!("EDGE_H3_LISTEN={v:?}: {e}"))?,
                ),
                _ => None,
            },
        })
    }

    /// Where `service` listens in this process.
    pub fn listen(&self, service: &str) -> Option<SocketAddr> {
        self.listen.get(service).copied()
    }

    fn schema(&self, database: &str) -> anyhow::Result<SchemaName> {
        SchemaName::parse(&format!("{}{database}", self.schema_prefix))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The TLS files named by the variables `vars` (certificate, key and, if a third is named, the
/// CA), loaded; `None` when none is set, an error naming what is missing when some are.
fn tls_from_env(vars: &[&str]) -> anyhow::Result<Option<Arc<platform::tls::Tls>>> {
    let values: Vec<Option<String>> = vars
        .iter()
        .map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<&str> = vars
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} set but {} not: TLS needs all of them",
            vars.join(", "),
            missing.join(", ")
        );
    }
    let path = |i: usize| {
        values
            .get(i)
            .cloned()
            .flatten()
            .map(std::path::PathBuf::from)
    };
    let files = platform::tls::TlsFiles {
        cert: path(0).unwrap_or_default(),
        key: path(1).unwrap_or_default(),
        ca: path(2),
    };
    let tls = platform::tls::Tls::load(files).with_context(|| vars.join(", "))?;
    Ok(Some(Arc::new(tls)))
}

/// The stores of this process, by database name: each an `Arc<dyn Store<S>>` of the schema
/// its service declares.
type Stores = BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>;

async fn connect<S: PgSchema>(
    settings: &Settings,
    database: &str,
) -> anyhow::Result<Arc<dyn Any + Send + Sync>> {
    let store = PgStore::<S>::connect(&settings.database_url, &settings.schema(database)?)
        .await
        .with_context(|| format!("connecting to Postgres schema {database}"))?;
    let store: Arc<dyn Store<S>> = Arc::new(store);
    Ok(Arc::new(store))
}

/// Connects the store of `database` with its service's schema (the one list of which
/// database holds which schema in production).
async fn connect_store(
    settings: &Settings,
    database: &str,
) -> anyhow::Result<Arc<dyn Any + Send + Sync>> {
    match database {
        "orders" => connect::<order::OrderSchema>(settings, database).await,
        "payments" => connect::<payment::PaymentSchema>(settings, database).await,
        "deliveries" => connect::<delivery::DeliverySchema>(settings, database).await,
        "analytics" => connect::<analytics::MartSchema>(settings, database).await,
        "users" => connect::<user::UserSchema>(settings, database).await,
        "ads" => connect::<ad::AdSchema>(settings, database).await,
        "search" => connect::<search::SearchSchema>(settings, database).await,
        "media" => connect::<media::MediaSchema>(settings, database).await,
        "moderation" => connect::<moderation::ModerationSchema>(settings, database).await,
        "reports" => connect::<report::ReportSchema>(settings, database).await,
        "notifications" => connect::<notification::NotificationSchema>(settings, database).await,
        other => anyhow::bail!("no schema is known for database {other:?}"),
    }
}

/// What one service of this process is given ([`wiring::Env`]).
struct ProcessEnv {
    spec: &'static ServiceSpec,
    settings: Arc<Settings>,
    stores: Arc<Stores>,
    events: Option<Arc<KafkaEventLog>>,
    ledger: fakes::psp::SharedLedger,
    books: fakes::courier::SharedBooks,
    outbox: fakes::messenger::SharedOutbox,
    objects: fakes::s3::SharedObjects,
    verdicts: fakes::moderator::SharedVerdicts,
    metrics: Arc<platform::metrics::Registry>,
}

impl Env for ProcessEnv {
    fn metrics(&self) -> Arc<platform::metrics::Registry> {
        self.metrics.clone()
    }

    fn instance(&self) -> String {
        format!("{}-{}", self.spec.name, self.settings.instance_id)
    }

    fn listen(&self) -> SocketAddr {
        self.settings
            .listen(self.spec.name)
            .unwrap_or_else(|| loopback(self.spec.port))
    }

    fn http(&self) -> Option<(SocketAddr, String)> {
        self.spec.http_port?;
        let addr = self.settings.listen(&http_key(self.spec.name))?;
        Some((addr, format!("http://{addr}")))
    }

    fn urls(&self, service: &str) -> String {
        match self.settings.urls.get(service) {
            Some(urls) => urls.clone(),
            None => self
                .settings
                .listen(service)
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
        }
    }

    fn store<S: Schema>(&self) -> anyhow::Result<Arc<dyn Store<S>>> {
        let database = self
            .spec
            .database
            .with_context(|| format!("{} has no database", self.spec.name))?;
        Ok(self
            .stores
            .get(database)
            .and_then(|s| s.downcast_ref::<Arc<dyn Store<S>>>())
            .with_context(|| format!("no store of the right schema for {database}"))?
            .clone())
    }

    fn mutants(&self) -> Mutants {
        Mutants::default()
    }

    fn hints(&self) -> anyhow::Result<Arc<dyn platform::ports::Hints>> {
        Ok(Arc::new(adapters::RedisHints::new(
            &self.settings.redis_url,
        )?))
    }

    fn events(&self) -> anyhow::Result<Arc<dyn platform::ports::EventLog>> {
        let events = self
            .events
            .clone()
            .with_context(|| format!("{} needs Kafka", self.spec.name))?;
        Ok(events)
    }

    fn password_cost(&self) -> user::PasswordCost {
        self.settings.password_cost
    }

    fn infra<S: Schema>(&self) -> anyhow::Result<Infra<S>> {
        let store = self.store()?;
        let events = self
            .events
            .clone()
            .with_context(|| format!("{} needs Kafka", self.spec.name))?;
        Ok(Infra {
            instance: self.instance(),
            store,
            events,
            producer: ProducerConfig {
                client_rack: Some(self.settings.client_rack.clone()),
                ..ProducerConfig::default()
            },
            mutants: Mutants::default(),
            max_poll_interval: self.settings.max_poll_interval,
            metrics: self.metrics.clone(),
            tls: self.settings.mesh_tls.clone(),
        })
    }

    fn consumer_group(&self, group: &str) -> String {
        format!("{}{group}", self.settings.schema_prefix)
    }

    fn client_rack(&self) -> Option<String> {
        Some(self.settings.client_rack.clone())
    }

    fn psp(&self) -> (fakes::psp::PspConfig, fakes::psp::SharedLedger) {
        (self.settings.psp.clone(), self.ledger.clone())
    }

    fn courier(&self) -> (fakes::courier::CourierConfig, fakes::courier::SharedBooks) {
        (self.settings.courier.clone(), self.books.clone())
    }

    fn messenger(
        &self,
    ) -> (
        fakes::messenger::MessengerConfig,
        fakes::messenger::SharedOutbox,
    ) {
        (self.settings.messenger.clone(), self.outbox.clone())
    }

    fn order_limits(&self) -> order::Limits {
        self.settings.order_limits
    }

    fn mesh_tls(&self) -> Option<Arc<platform::tls::Tls>> {
        self.settings.mesh_tls.clone()
    }

    fn edge_tls(&self) -> Option<Arc<platform::tls::Tls>> {
        self.settings.edge_tls.clone()
    }

    fn h3_listen(&self) -> Option<SocketAddr> {
        self.settings.h3_listen
    }

    fn s3(&self) -> (fakes::s3::S3Config, fakes::s3::SharedObjects) {
        (self.settings.s3.clone(), self.objects.clone())
    }

    fn moderator(
        &self,
    ) -> (
        fakes::moderator::ModeratorConfig,
        fakes::moderator::SharedVerdicts,
    ) {
        (self.settings.moderator.clone(), self.verdicts.clone())
    }

    fn moderation_provider(&self) -> Option<String> {
        self.settings.moderation_provider.clone()
    }

    fn moderation_tuning(&self) -> moderation::Tuning {
        self.settings.moderation
    }

    fn object_store(&self) -> media::ObjectStoreConfig {
        self.settings.object_store.clone()
    }
}

/// A running service: which one, and its task.
pub type Running = (Service, tokio::task::JoinHandle<anyhow::Result<()>>);

/// Starts `services` and returns their tasks; each stops on `shutdown`. Each gets a
/// registry in `metrics`.
pub async fn start(
    services: &[Service],
    settings: &Settings,
    shutdown: Shutdown,
    metrics: &admin::Metrics,
) -> anyhow::Result<Vec<Running>> {
    let events = if services.iter().any(|s| s.0.kafka) {
        let log = KafkaEventLog::connect(KafkaConfig::new(settings.kafka_bootstrap.clone()))
            .await
            .context("connecting to Kafka")?;
        log.ensure_listed_topics()
            .await
            .context("creating the listed topics")?;
        Some(Arc::new(log))
    } else {
        None
    };
    let mut stores = Stores::new();
    for database in services.iter().filter_map(|s| s.0.database) {
        stores.insert(database, connect_store(settings, database).await?);
    }
    let (settings, stores) = (Arc::new(settings.clone()), Arc::new(stores));
    let ledger: fakes::psp::SharedLedger = Default::default();
    let books: fakes::courier::SharedBooks = Default::default();
    let outbox: fakes::messenger::SharedOutbox = Default::default();
    let objects: fakes::s3::SharedObjects = Default::default();
    let verdicts: fakes::moderator::SharedVerdicts = Default::default();
    let mut ordered: Vec<Service> = services.to_vec();
    ordered.sort_by_key(|s| SERVICES.iter().position(|t| t == s.0));
    ordered.dedup();
    let mut tasks = Vec::new();
    for service in ordered {
        let env = ProcessEnv {
            spec: service.0,
            settings: settings.clone(),
            stores: stores.clone(),
            events: events.clone(),
            ledger: Arc::clone(&ledger),
            books: Arc::clone(&books),
            outbox: Arc::clone(&outbox),
            objects: Arc::clone(&objects),
            verdicts: Arc::clone(&verdicts),
            metrics: metrics.register(service.0.name),
        };
        let shutdown = shutdown.clone();
        tasks.push((
            service,
            tokio::spawn(async move { wiring::run_service(env.spec, &env, shutdown).await }),
        ));
    }
    Ok(tasks)
}
