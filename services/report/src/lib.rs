//! The report service: users report ads and users; each report is answered at once as
//! PROCESSING and its task goes to `moderation.tasks` through the outbox (key = target id,
//! so reports on one target are decided in order). The service consumes
//! `moderation.results` (group `report`, each decision committed with its inbox mark) and
//! shows the decision on the report.

mod api;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use contracts::report::report_service_server::ReportServiceServer;
use moderation::{ModerationResult, ModerationTask};
use platform::{
    inbox::{run_consumer, ConsumerSettings, Effect, EffectError},
    outbox::{run_relay, OutboxSignal, RelayConfig},
    ports::{ConsumedRecord, ConsumerConfig, Store, Tx},
    Infra, Shutdown,
};

pub use store::{Report, ReportModel, ReportQuery, ReportSchema, ReportWrite};

/// The consumer group of `moderation.results`.
pub const GROUP: &str = "report";

/// Bounds of reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Reports one user may make per `window`.
    pub reports_per_window: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reports_per_window: 20,
            window: Duration::from_secs(3600),
        }
    }
}

/// Report service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// The consumer group of results (normally [`GROUP`]).
    pub group_id: String,
    /// Kafka `client.rack` of this instance.
    pub client_rack: Option<String>,
    pub limits: Limits,
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// The moderation task of `report`.
pub fn task_of(report: &Report) -> ModerationTask {
    ModerationTask {
        task_id: report.report_id.clone(),
        target_kind: report.target_kind.clone(),
        target_id: report.target_id.clone(),
        reporter_id: report.reporter_id.clone(),
        reason: report.reason.clone(),
        comment: report.comment.clone(),
        created_ms: report.created_ms,
    }
}

/// A result decides its report, once: a report decided already keeps its first decision.
fn effect() -> Effect<ReportSchema> {
    Arc::new(
        |record: ConsumedRecord, store: Arc<dyn Store<ReportSchema>>| {
            Box::pin(async move {
                let result: ModerationResult =
                    serde_json::from_slice(&record.payload).map_err(|e| {
                        EffectError::Poison(format!("moderation result does not decode: {e}"))
                    })?;
                let current = store
                    .query(ReportQuery::Report {
                        report_id: result.task_id.clone(),
                    })
                    .await?;
                match current.first() {
                    Some(r) if r.status == "PROCESSING" => {
                        Ok(Some(Tx::new().write(ReportWrite::Decide {
                            report_id: result.task_id,
                            decision: result.decision,
                            reason: result.reason.chars().take(200).collect(),
                            at_ms: result.decided_ms,
                        })))
                    }
                    Some(_) => Ok(None),
                    None => Err(EffectError::Poison(format!(
                        "a result for report {}, which does not exist",
                        result.task_id
                    ))),
                }
            })
        },
    )
}

/// Runs the report service (gRPC, its outbox relay and its results consumer) until
/// `shutdown`.
pub async fn run(
    config: Config,
    infra: Infra<ReportSchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let outbox = OutboxSignal::default();
    let relay = tokio::spawn(run_relay(
        infra.store.clone(),
        infra.events.clone(),
        infra.producer.clone(),
        RelayConfig {
            without_lease: infra.mutants.work_without_claims,
            ..RelayConfig::default()
        },
        infra.instance.clone(),
        outbox.clone(),
        shutdown.clone(),
    ));
    let mut consumer = ConsumerConfig::new(config.group_id.clone());
    consumer.client_rack = config.client_rack.clone();
    consumer.enable_auto_commit = infra.mutants.auto_commit_before_processing;
    let settings = ConsumerSettings {
        consumer,
        topics: vec![platform::topics::MODERATION_RESULTS.into()],
        producer: infra.producer.clone(),
        inbox: !infra.mutants.consumer_without_inbox,
    };
    let consuming = tokio::spawn(run_consumer(
        infra.store.clone(),
        infra.events.clone(),
        settings,
        effect(),
        shutdown.clone(),
    ));
    tracing::info!(listen = %config.listen, "report service up");
    tonic::transport::Server::builder()
        .add_service(ReportServiceServer::new(api::ReportApi {
            store: infra.store.clone(),
            outbox,
            limits: config.limits,
        }))
        .serve_with_shutdown(config.listen, shutdown.clone().into_wait())
        .await?;
    let _ = consuming.await;
    let _ = relay.await;
    Ok(())
}
