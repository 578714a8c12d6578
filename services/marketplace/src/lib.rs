//! Wiring of the production process: settings from the environment, production adapters,
//! and each service's one entry point. `main.rs` and the real-stack tests both use it.

use std::{net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use adapters::{postgres::PgSchema, KafkaConfig, KafkaEventLog, PgStore, SchemaName};
use anyhow::Context;
use platform::{ports::ProducerConfig, Infra, Mutants, Shutdown};

/// The services this binary can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Gateway,
    Order,
    Payment,
    Delivery,
    Psp,
    Courier,
    Analytics,
}

impl Service {
    /// Every service, in start order (dependencies first).
    pub const ALL: [Service; 7] = [
        Service::Psp,
        Service::Courier,
        Service::Payment,
        Service::Delivery,
        Service::Order,
        Service::Gateway,
        Service::Analytics,
    ];
}

impl FromStr for Service {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "gateway" => Service::Gateway,
            "order" => Service::Order,
            "payment" => Service::Payment,
            "delivery" => Service::Delivery,
            "psp" => Service::Psp,
            "courier" => Service::Courier,
            "analytics" => Service::Analytics,
            other => anyhow::bail!("unknown service {other:?}: expected gateway, order, payment, delivery, psp, courier, analytics or all"),
        })
    }
}

/// Process settings, from the environment with local defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `SCHEMA_PREFIX`: prefixes each service's Postgres schema (tests use a fresh one).
    pub schema_prefix: String,
    /// `KAFKA_BOOTSTRAP`.
    pub kafka_bootstrap: String,
    /// `CLIENT_RACK`: the Kafka `client.rack` of this process (`msk` or `nsk`).
    pub client_rack: String,
    /// `INSTANCE_ID`: tells this process's service instances apart from other processes'
    /// instances of the same services (each instance is `<service>-<id>`; default: the
    /// process id). Two running processes must not share one.
    pub instance_id: String,
    pub gateway_listen: SocketAddr,
    pub order_listen: SocketAddr,
    pub payment_listen: SocketAddr,
    pub delivery_listen: SocketAddr,
    pub psp_listen: SocketAddr,
    pub courier_listen: SocketAddr,
    /// Where payment serves the PSP's webhook (`PAYMENT_CALLBACK_LISTEN`).
    pub payment_callback_listen: SocketAddr,
    /// Fake PSP behaviour (`PSP_DECLINE_PER_MILLE`, `PSP_TIMEOUT_PER_MILLE`).
    pub psp: fakes::psp::PspConfig,
    /// Fake courier behaviour (`COURIER_FAIL_PER_MILLE`, `COURIER_STAGE_MS`).
    pub courier: fakes::courier::CourierConfig,
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

impl Settings {
    /// Reads the environment; unset variables take the local defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        let addr = |name: &str, default: &str| -> anyhow::Result<SocketAddr> {
            env_parse(name, default.parse()?)
        };
        let mut psp = fakes::psp::PspConfig::default();
        psp.decline_per_mille = env_parse("PSP_DECLINE_PER_MILLE", psp.decline_per_mille)?;
        psp.timeout_per_mille = env_parse("PSP_TIMEOUT_PER_MILLE", psp.timeout_per_mille)?;
        let mut courier = fakes::courier::CourierConfig::default();
        courier.fail_per_mille = env_parse("COURIER_FAIL_PER_MILLE", courier.fail_per_mille)?;
        courier.stage_ms = env_parse("COURIER_STAGE_MS", courier.stage_ms)?;
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
            instance_id: env_or("INSTANCE_ID", &std::process::id().to_string()),
            gateway_listen: addr("GATEWAY_LISTEN", "127.0.0.1:8080")?,
            order_listen: addr("ORDER_LISTEN", "127.0.0.1:50051")?,
            payment_listen: addr("PAYMENT_LISTEN", "127.0.0.1:50052")?,
            delivery_listen: addr("DELIVERY_LISTEN", "127.0.0.1:50053")?,
            psp_listen: addr("PSP_LISTEN", "127.0.0.1:8081")?,
            courier_listen: addr("COURIER_LISTEN", "127.0.0.1:8082")?,
            payment_callback_listen: addr("PAYMENT_CALLBACK_LISTEN", "127.0.0.1:8083")?,
            psp,
            courier,
        })
    }

    fn schema(&self, service: &str) -> anyhow::Result<SchemaName> {
        SchemaName::parse(&format!("{}{service}", self.schema_prefix))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

async fn infra<S: PgSchema>(
    settings: &Settings,
    schema: &str,
    events: Arc<KafkaEventLog>,
) -> anyhow::Result<Infra<S>> {
    let store = PgStore::<S>::connect(&settings.database_url, &settings.schema(schema)?)
        .await
        .with_context(|| format!("connecting to Postgres schema {schema}"))?;
    Ok(Infra {
        instance: format!("{schema}-{}", settings.instance_id),
        store: Arc::new(store),
        events,
        producer: ProducerConfig {
            client_rack: Some(settings.client_rack.clone()),
            ..ProducerConfig::default()
        },
        mutants: Mutants::default(),
    })
}

/// A running service: which one, and its task.
pub type Running = (Service, tokio::task::JoinHandle<anyhow::Result<()>>);

/// Starts `services` and returns their tasks; each stops on `shutdown`.
pub async fn start(
    services: &[Service],
    settings: &Settings,
    shutdown: Shutdown,
) -> anyhow::Result<Vec<Running>> {
    let needs_kafka = services.iter().any(|s| {
        matches!(
            s,
            Service::Order | Service::Payment | Service::Delivery | Service::Analytics
        )
    });
    let events = if needs_kafka {
        let log = KafkaEventLog::connect(KafkaConfig::new(settings.kafka_bootstrap.clone()))
            .await
            .context("connecting to Kafka")?;
        for topic in platform::topics::all() {
            log.ensure_topic(
                &topic.name,
                topic.partitions,
                platform::topics::REPLICATION_FACTOR,
                platform::topics::MIN_INSYNC_REPLICAS,
            )
            .await
            .with_context(|| format!("creating topic {}", topic.name))?;
        }
        Some(Arc::new(log))
    } else {
        None
    };
    let url = |a: SocketAddr| format!("http://{a}");
    let mut tasks = Vec::new();
    for &service in services {
        let s = shutdown.clone();
        let task = match service {
            Service::Psp => {
                let listener = tokio::net::TcpListener::bind(settings.psp_listen)
                    .await
                    .context("binding psp")?;
                let (config, ledger) = (settings.psp.clone(), Default::default());
                tokio::spawn(async move {
                    fakes::psp::run(listener, config, ledger, s).await;
                    Ok(())
                })
            }
            Service::Courier => {
                let listener = tokio::net::TcpListener::bind(settings.courier_listen)
                    .await
                    .context("binding courier")?;
                let (config, books) = (settings.courier.clone(), Default::default());
                tokio::spawn(async move {
                    fakes::courier::run(listener, config, books, s).await;
                    Ok(())
                })
            }
            Service::Payment => {
                let infra = infra(settings, "payments", events.clone().context("kafka")?).await?;
                let config = payment::Config {
                    listen: settings.payment_listen,
                    psp_url: url(settings.psp_listen),
                    callback_listen: Some(settings.payment_callback_listen),
                    callback_url: Some(format!(
                        "{}/v1/psp/callbacks",
                        url(settings.payment_callback_listen)
                    )),
                    psp_timeout: Duration::from_secs(2),
                    worker_poll: Duration::from_millis(500),
                };
                tokio::spawn(payment::run(config, infra, s))
            }
            Service::Delivery => {
                let infra = infra(settings, "deliveries", events.clone().context("kafka")?).await?;
                let config = delivery::Config {
                    listen: settings.delivery_listen,
                    courier_url: url(settings.courier_listen),
                    courier_timeout: Duration::from_secs(2),
                    worker_poll: Duration::from_millis(500),
                };
                tokio::spawn(delivery::run(config, infra, s))
            }
            Service::Order => {
                let infra = infra(settings, "orders", events.clone().context("kafka")?).await?;
                let config = order::Config::new(
                    settings.order_listen,
                    url(settings.payment_listen),
                    url(settings.delivery_listen),
                );
                tokio::spawn(order::run(config, infra, s))
            }
            Service::Analytics => {
                let infra = infra(settings, "analytics", events.clone().context("kafka")?).await?;
                let config = analytics::Config {
                    group_id: format!("{}{}", settings.schema_prefix, analytics::GROUP),
                    client_rack: Some(settings.client_rack.clone()),
                };
                tokio::spawn(analytics::run(config, infra, s))
            }
            Service::Gateway => {
                let listener = tokio::net::TcpListener::bind(settings.gateway_listen)
                    .await
                    .context("binding gateway")?;
                let config = gateway::Config {
                    order_url: url(settings.order_listen),
                };
                tokio::spawn(gateway::run(listener, config, s))
            }
        };
        tasks.push((service, task));
    }
    Ok(tasks)
}
