//! The one service table, and the one place each service's config is built and its entry
//! point called — for the production binary (`marketplace serve`) and the simulation's world
//! alike, so the two cannot drift.
//!
//! A world (production or simulation) implements [`Env`]: where an instance listens, the URLs
//! of a peer's instances, the instance's infrastructure (its typed store, the event log), and
//! the fakes' settings. [`run_service`] does the rest. Adding a service is a row in
//! [`SERVICES`], its crate, and its arm in [`run_service`] (plus, when it has a database, its
//! schema's SQL in `adapters` and its model on a DB node in the sim).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use platform::{
    ports::{EventLog, Hints, Schema, Store},
    Infra, Mutants, Shutdown,
};

/// A region of the seed's deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Region {
    Msk,
    Nsk,
}

impl Region {
    /// The Kafka `client.rack` of services placed in this region.
    pub fn rack(self) -> &'static str {
        match self {
            Region::Msk => "msk",
            Region::Nsk => "nsk",
        }
    }
}

/// One row of the service table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its name: `marketplace serve <name>`, node names `<name>-<i>` in the simulation.
    pub name: &'static str,
    /// Where the seed places it.
    pub region: Region,
    /// Instances in the simulation (production runs as many processes as it likes).
    pub sim_instances: u8,
    /// Port of its listener (gRPC or HTTP); 0 when it serves nothing.
    pub port: u16,
    /// Port of its HTTP listener beside its gRPC one, if any: the payment service's PSP
    /// webhooks, the notification service's SSE and WebSocket endpoints.
    pub http_port: Option<u16>,
    /// Its own database: the Postgres schema in production, node `<database>-db` in the sim.
    pub database: Option<&'static str>,
    /// Whether it needs the Kafka cluster.
    pub kafka: bool,
    /// An external provider's fake (PSP, courier), not a marketplace service.
    pub fake: bool,
}

const fn service(name: &'static str, region: Region, port: u16) -> ServiceSpec {
    ServiceSpec {
        name,
        region,
        sim_instances: 2,
        port,
        http_port: None,
        database: None,
        kafka: false,
        fake: false,
    }
}

const fn fake(name: &'static str, region: Region, port: u16) -> ServiceSpec {
    ServiceSpec {
        sim_instances: 1,
        fake: true,
        ..service(name, region, port)
    }
}

/// Every service, dependencies first (the order they start in).
pub const SERVICES: [ServiceSpec; 17] = [
    fake("psp", Region::Msk, 8081),
    fake("courier", Region::Nsk, 8082),
    fake("s3", Region::Msk, 9000),
    fake("moderator", Region::Msk, 8084),
    fake("messenger", Region::Msk, 8085),
    ServiceSpec {
        http_port: Some(8083),
        database: Some("payments"),
        kafka: true,
        ..service("payment", Region::Msk, 50052)
    },
    ServiceSpec {
        database: Some("deliveries"),
        kafka: true,
        ..service("delivery", Region::Nsk, 50053)
    },
    ServiceSpec {
        database: Some("analytics"),
        kafka: true,
        ..service("analytics", Region::Msk, 0)
    },
    ServiceSpec {
        database: Some("users"),
        kafka: true,
        ..service("user", Region::Msk, 50054)
    },
    ServiceSpec {
        database: Some("ads"),
        kafka: true,
        ..service("ad", Region::Msk, 50055)
    },
    ServiceSpec {
        database: Some("search"),
        kafka: true,
        ..service("search", Region::Msk, 50056)
    },
    ServiceSpec {
        database: Some("media"),
        ..service("media", Region::Msk, 50057)
    },
    ServiceSpec {
        database: Some("moderation"),
        kafka: true,
        sim_instances: 3,
        ..service("moderation", Region::Nsk, 0)
    },
    ServiceSpec {
        database: Some("reports"),
        kafka: true,
        ..service("report", Region::Msk, 50058)
    },
    ServiceSpec {
        http_port: Some(8090),
        database: Some("notifications"),
        kafka: true,
        ..service("notification", Region::Msk, 50059)
    },
    ServiceSpec {
        database: Some("orders"),
        kafka: true,
        ..service("order", Region::Msk, 50051)
    },
    ServiceSpec {
        kafka: true,
        ..service("gateway", Region::Msk, 8080)
    },
];

/// The row of `name`.
pub fn spec(name: &str) -> Option<&'static ServiceSpec> {
    SERVICES.iter().find(|s| s.name == name)
}

/// Every service's name, for messages.
pub fn names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

/// Timeouts and intervals every world uses alike (declared once).
pub mod timing {
    use super::Duration;

    /// Bound on one call to the PSP.
    pub const PSP_CALL: Duration = Duration::from_secs(2);
    /// Bound on one call to the messaging provider.
    pub const PROVIDER_CALL: Duration = Duration::from_secs(2);
    /// Bound on one call to the courier.
    pub const COURIER_CALL: Duration = Duration::from_secs(2);
    /// Worker poll interval when nothing wakes it (payment, delivery).
    pub const WORKER_POLL: Duration = Duration::from_millis(500);
}

/// What a world gives one instance of a service.
pub trait Env: Send + Sync {
    /// The instance's name, unique among the service's instances.
    fn instance(&self) -> String;
    /// Where the instance's listener binds.
    fn listen(&self) -> SocketAddr;
    /// Where its HTTP listener beside the gRPC one binds (see [`ServiceSpec::http_port`]),
    /// and the URL peers reach it at.
    fn http(&self) -> Option<(SocketAddr, String)>;
    /// Comma-separated URLs of every instance of `service` (what a caller's channel takes).
    fn urls(&self, service: &str) -> String;
    /// The instance's infrastructure, its store with schema `S`.
    fn infra<S: Schema>(&self) -> anyhow::Result<Infra<S>>;
    /// The instance's store with schema `S`, for a service without Kafka.
    fn store<S: Schema>(&self) -> anyhow::Result<Arc<dyn Store<S>>>;
    /// The Kafka cluster, for a service without a store.
    fn events(&self) -> anyhow::Result<Arc<dyn EventLog>>;
    /// The hint bus between the instances of a service (Redis in production).
    fn hints(&self) -> anyhow::Result<Arc<dyn Hints>>;
    /// The deliberate faults the instance runs with (none in production).
    fn mutants(&self) -> Mutants;
    /// The instance's metrics (one registry per instance: [`Env::infra`] carries the same).
    fn metrics(&self) -> Arc<platform::metrics::Registry>;
    /// The argon2id cost of new password hashes.
    fn password_cost(&self) -> user::PasswordCost;
    /// The name a consumer group `group` has in this world (tests prefix it).
    fn consumer_group(&self, group: &str) -> String;
    /// Kafka `client.rack` of the instance's consumers.
    fn client_rack(&self) -> Option<String>;
    /// The fake PSP's settings and books.
    fn psp(&self) -> (fakes::psp::PspConfig, fakes::psp::SharedLedger);
    /// The fake moderation provider's settings and verdicts.
    fn moderator(
        &self,
    ) -> (
        fakes::moderator::ModeratorConfig,
        fakes::moderator::SharedVerdicts,
    );
    /// The URL of the external moderation provider the workers call; `None`: the workers
    /// decide by the rules themselves.
    fn moderation_provider(&self) -> Option<String>;
    /// How the moderation workers work: attempts per task, the bound on a provider call.
    fn moderation_tuning(&self) -> moderation::Tuning;
    /// The fake object store's settings and objects.
    fn s3(&self) -> (fakes::s3::S3Config, fakes::s3::SharedObjects);
    /// Where the media service keeps photos.
    fn object_store(&self) -> media::ObjectStoreConfig;
    /// The fake messaging provider's settings and what it delivered.
    fn messenger(
        &self,
    ) -> (
        fakes::messenger::MessengerConfig,
        fakes::messenger::SharedOutbox,
    );
    /// The fake courier's settings and books.
    fn courier(&self) -> (fakes::courier::CourierConfig, fakes::courier::SharedBooks);
    /// When the order service refuses new orders (admission control).
    fn order_limits(&self) -> order::Limits;
    /// The instance's identity for mutual TLS between services (its gRPC server and
    /// channels; [`Env::infra`] carries the same); `None`: plain (the simulation's default).
    fn mesh_tls(&self) -> Option<Arc<platform::tls::Tls>> {
        None
    }
    /// TLS for the endpoints clients reach from outside (the gateway, live updates).
    fn edge_tls(&self) -> Option<Arc<platform::tls::Tls>> {
        None
    }
    /// Where the gateway serves HTTP/3 (UDP), if it does.
    fn h3_listen(&self) -> Option<SocketAddr> {
        None
    }
}

/// Builds `spec`'s config from `env` and runs the service until `shutdown` (or until it ends
/// by itself, with the reason).
pub async fn run_service(
    spec: &ServiceSpec,
    env: &impl Env,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    match spec.name {
        "psp" => {
            let listener = tokio::net::TcpListener::bind(env.listen()).await?;
            let (config, ledger) = env.psp();
            fakes::psp::run(listener, config, ledger, shutdown).await;
            Ok(())
        }
        "courier" => {
            let listener = tokio::net::TcpListener::bind(env.listen()).await?;
            let (config, books) = env.courier();
            fakes::courier::run(listener, config, books, shutdown).await;
            Ok(())
        }
        "s3" => {
            let listener = tokio::net::TcpListener::bind(env.listen()).await?;
            let (config, objects) = env.s3();
            fakes::s3::run(listener, config, objects, shutdown).await;
            Ok(())
        }
        "messenger" => {
            let listener = tokio::net::TcpListener::bind(env.listen()).await?;
            let (config, outbox) = env.messenger();
            fakes::messenger::run(listener, config, outbox, shutdown).await;
            Ok(())
        }
        "moderator" => {
            let listener = tokio::net::TcpListener::bind(env.listen()).await?;
            let (config, verdicts) = env.moderator();
            fakes::moderator::run(listener, config, verdicts, shutdown).await;
            Ok(())
        }
        "payment" => {
            let callback = env.http();
            let config = payment::Config {
                listen: env.listen(),
                psp_url: env.urls("psp"),
                psp_timeout: timing::PSP_CALL,
                worker_poll: timing::WORKER_POLL,
                callback_listen: callback.as_ref().map(|(addr, _)| *addr),
                callback_url: callback.map(|(_, url)| format!("{url}/v1/psp/callbacks")),
            };
            payment::run(config, env.infra()?, shutdown).await
        }
        "delivery" => {
            let config = delivery::Config {
                listen: env.listen(),
                courier_url: env.urls("courier"),
                courier_timeout: timing::COURIER_CALL,
                worker_poll: timing::WORKER_POLL,
            };
            delivery::run(config, env.infra()?, shutdown).await
        }
        "order" => {
            let config = order::Config {
                admission: env.order_limits(),
                notification_url: env.urls("notification"),
                ..order::Config::new(env.listen(), env.urls("payment"), env.urls("delivery"))
            };
            order::run(config, env.infra()?, shutdown).await
        }
        "analytics" => {
            let config = analytics::Config {
                group_id: env.consumer_group(analytics::GROUP),
                client_rack: env.client_rack(),
            };
            analytics::run(config, env.infra()?, shutdown).await
        }
        "user" => {
            let config = user::Config {
                password_cost: env.password_cost(),
                mutants: env.mutants(),
                moderation_group: env.consumer_group(user::MODERATION_GROUP),
                client_rack: env.client_rack(),
                ..user::Config::new(env.listen())
            };
            user::run(config, env.infra()?, shutdown).await
        }
        "ad" => {
            let config = ad::Config {
                listen: env.listen(),
                moderation_group: env.consumer_group(ad::MODERATION_GROUP),
                client_rack: env.client_rack(),
            };
            ad::run(config, env.infra()?, shutdown).await
        }
        "search" => {
            let config = search::Config {
                listen: env.listen(),
                group_id: env.consumer_group(search::GROUP),
                client_rack: env.client_rack(),
            };
            search::run(config, env.infra()?, shutdown).await
        }
        "media" => {
            let config = media::Config {
                mutants: env.mutants(),
                metrics: env.metrics(),
                tls: env.mesh_tls(),
                ..media::Config::new(env.listen(), env.object_store())
            };
            media::run(config, env.store()?, shutdown).await
        }
        "moderation" => {
            let tuning = env.moderation_tuning();
            let config = moderation::Config {
                group_id: env.consumer_group(moderation::GROUP),
                client_rack: env.client_rack(),
                task_attempts: tuning.task_attempts,
            };
            let moderator: Arc<dyn moderation::Moderator> = match env.moderation_provider() {
                Some(url) => {
                    let name = "moderation provider";
                    let breaker = platform::breaker::Breaker::shared(name);
                    env.metrics().watch_breaker(breaker.clone());
                    let http = platform::http::HttpClient::new(tuning.provider_call)
                        .with_breaker(breaker)
                        .observed(env.metrics(), name);
                    Arc::new(moderation::Provider {
                        url,
                        policy: platform::retry::RetryPolicy {
                            attempts_max: 4,
                            deadline: (tuning.provider_call * 5).max(Duration::from_secs(10)),
                            retries: http.retries(),
                            ..platform::retry::RetryPolicy::rpc()
                        },
                        http,
                    })
                }
                None => Arc::new(moderation::Rules),
            };
            moderation::run(config, env.infra()?, moderator, shutdown).await
        }
        "report" => {
            let config = report::Config {
                listen: env.listen(),
                group_id: env.consumer_group(report::GROUP),
                client_rack: env.client_rack(),
                limits: report::Limits::default(),
            };
            report::run(config, env.infra()?, shutdown).await
        }
        "notification" => {
            let (http, _) = env
                .http()
                .ok_or_else(|| anyhow::anyhow!("the notification service has no HTTP port"))?;
            let listener = tokio::net::TcpListener::bind(http).await?;
            let config = notification::Config {
                listen: env.listen(),
                provider_url: env.urls("messenger"),
                provider_call: timing::PROVIDER_CALL,
                worker_poll: timing::WORKER_POLL,
                user_url: env.urls("user"),
                group_id: env.consumer_group(notification::GROUP),
                limits: notification::Limits::default(),
                edge_tls: env.edge_tls(),
            };
            notification::run(config, env.infra()?, env.hints()?, listener, shutdown).await
        }
        "gateway" => {
            let listener = tokio::net::TcpListener::bind(env.listen()).await?;
            let config = gateway::Config {
                order_url: env.urls("order"),
                user_url: env.urls("user"),
                ad_url: env.urls("ad"),
                search_url: env.urls("search"),
                media_url: env.urls("media"),
                report_url: env.urls("report"),
                mutants: env.mutants(),
                metrics: env.metrics(),
                edge_tls: env.edge_tls(),
                mesh_tls: env.mesh_tls(),
                h3_listen: env.h3_listen(),
            };
            let group = env.consumer_group(&format!("gateway-cache-{}", env.instance()));
            gateway::run(listener, config, env.events()?, group, shutdown).await
        }
        other => anyhow::bail!("the service table has no entry point for {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_named_once_and_listens_on_its_own_ports() {
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SERVICES.len());
        let mut ports: Vec<u16> = SERVICES
            .iter()
            .flat_map(|s| [Some(s.port), s.http_port])
            .flatten()
            .filter(|p| *p != 0)
            .collect();
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n, "two services share a port");
    }

    #[test]
    fn services_start_after_the_services_they_call() {
        let position = |n: &str| SERVICES.iter().position(|s| s.name == n);
        for (caller, callee) in [
            ("payment", "psp"),
            ("delivery", "courier"),
            ("order", "payment"),
            ("order", "delivery"),
            ("gateway", "order"),
            ("gateway", "user"),
            ("gateway", "ad"),
            ("gateway", "search"),
            ("gateway", "media"),
            ("media", "s3"),
            ("moderation", "moderator"),
            ("gateway", "report"),
            ("search", "ad"),
            ("notification", "user"),
            ("notification", "messenger"),
            ("order", "notification"),
        ] {
            assert!(
                position(callee) < position(caller),
                "{caller} before {callee}"
            );
        }
    }
}
