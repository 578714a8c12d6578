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
    inbox::Effect,
    outbox::OutboxSignal,
    ports::{ConsumedRecord, Store, Tx},
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
                let result = ModerationResult::decode(&record)?;
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
                    // Not a report of this store (another deployment's, sharing the
                    // cluster): nothing to do.
                    None => {
                        tracing::debug!(task = %result.task_id, "a result for no report of ours");
                        Ok(None)
                    }
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
    let relay = infra.spawn_relay(outbox.clone(), shutdown.clone());
    let consuming = infra.spawn_consumer(
        infra.consumer_settings(
            &config.group_id,
            config.client_rack.clone(),
            &[platform::topics::MODERATION_RESULTS],
        ),
        effect(),
        shutdown.clone(),
    );
    tracing::info!(listen = %config.listen, "report service up");
    let tls = infra.tls.clone();
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                infra.metrics.clone(),
            ))
            .add_service(ReportServiceServer::new(api::ReportApi {
                store: infra.store.clone(),
                outbox,
                limits: config.limits,
            })),
        config.listen,
        tls,
        shutdown.clone(),
    )
    .await?;
    let _ = consuming.await;
    let _ = relay.await;
    Ok(())
}
