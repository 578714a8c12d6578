//! The gRPC face of the report service.

use std::sync::Arc;

use contracts::report::{
    report_service_server::ReportService, CreateReportRequest, Report as ReportMsg, ReportRef,
};
use platform::{
    grpc::{require_id, store_status},
    outbox::OutboxSignal,
    ports::{Store, StoreError, Tx},
};
use tonic::{Request, Response, Status};

use crate::{
    now_ms,
    store::{
        Report, ReportQuery, ReportSchema, ReportWrite, COMMENT_CHARS_MAX, REASONS, TARGET_KINDS,
    },
    task_of, Limits,
};

const SERVICE: &str = "report";

pub(crate) struct ReportApi {
    pub store: Arc<dyn Store<ReportSchema>>,
    pub outbox: OutboxSignal,
    pub limits: Limits,
}

fn invalid(message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{SERVICE}: {message}"))
}

pub(crate) fn to_msg(r: &Report) -> ReportMsg {
    ReportMsg {
        report_id: r.report_id.clone(),
        reporter_id: r.reporter_id.clone(),
        target_kind: r.target_kind.clone(),
        target_id: r.target_id.clone(),
        reason: r.reason.clone(),
        comment: r.comment.clone(),
        status: r.status.clone(),
        decision: r.decision.clone(),
        decision_reason: r.decision_reason.clone(),
        created_ms: r.created_ms,
        decided_ms: r.decided_ms,
    }
}

impl ReportApi {
    async fn read(&self, query: ReportQuery) -> Result<Vec<Report>, Status> {
        self.store
            .query(query)
            .await
            .map_err(|e| store_status(SERVICE, e))
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn create_report(
        &self,
        request: Request<CreateReportRequest>,
    ) -> Result<Response<ReportMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "reporter_id", &req.reporter_id)?;
        require_id(SERVICE, "target_id", &req.target_id)?;
        let kind = req.target_kind.to_ascii_uppercase();
        if !TARGET_KINDS.contains(&kind.as_str()) {
            return Err(invalid("target_kind must be AD or USER"));
        }
        if !REASONS.contains(&req.reason.as_str()) {
            return Err(invalid(format!(
                "reason must be one of {}",
                REASONS.join(", ")
            )));
        }
        if req.comment.chars().count() > COMMENT_CHARS_MAX
            || req
                .comment
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(format!(
                "comment must be at most {COMMENT_CHARS_MAX} printable characters"
            )));
        }
        if kind == "USER" && req.target_id == req.reporter_id {
            return Err(invalid("one does not report oneself"));
        }
        let of_target = ReportQuery::OfTarget {
            reporter_id: req.reporter_id.clone(),
            target_kind: kind.clone(),
            target_id: req.target_id.clone(),
        };
        // Reporting a target again is the first report.
        if let Some(first) = self.read(of_target.clone()).await?.into_iter().next() {
            return Ok(Response::new(to_msg(&first)));
        }
        let now = now_ms();
        let window = self.limits.window.as_millis() as i64;
        let recent = self
            .read(ReportQuery::MadeBy {
                reporter_id: req.reporter_id.clone(),
                since_ms: now - window,
                limit: self.limits.reports_per_window,
            })
            .await?;
        if recent.len() >= self.limits.reports_per_window as usize {
            let oldest = recent.last().map_or(now, |r| r.created_ms);
            let mut status = Status::resource_exhausted(format!(
                "{SERVICE}: at most {} reports per hour",
                self.limits.reports_per_window
            ));
            if let Ok(v) = ((oldest + window - now) / 1000).max(1).to_string().parse() {
                status
                    .metadata_mut()
                    .insert(platform::grpc::RETRY_AFTER_METADATA, v);
            }
            return Err(status);
        }
        let report = Report {
            report_id: platform::ids::uuid_v4().to_string(),
            reporter_id: req.reporter_id,
            target_kind: kind,
            target_id: req.target_id,
            reason: req.reason,
            comment: req.comment,
            status: "PROCESSING".into(),
            decision: String::new(),
            decision_reason: String::new(),
            created_ms: now,
            decided_ms: 0,
        };
        let tx = Tx::new()
            .write(ReportWrite::Create(report.clone()))
            .emit(task_of(&report).message());
        match self.store.commit(tx).await {
            Ok(()) => {
                self.outbox.notify();
                Ok(Response::new(to_msg(&report)))
            }
            // The same reporter raced on the same target: the winner's report.
            Err(StoreError::Conflict { .. }) => self
                .read(of_target)
                .await?
                .into_iter()
                .next()
                .map(|r| Response::new(to_msg(&r)))
                .ok_or_else(|| Status::aborted(format!("{SERVICE}: concurrent report, retry"))),
            Err(e) => Err(store_status(SERVICE, e)),
        }
    }

    async fn get_report(&self, request: Request<ReportRef>) -> Result<Response<ReportMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "report_id", &req.report_id)?;
        let not_found = || Status::not_found(format!("{SERVICE}: no report {}", req.report_id));
        let report = self
            .read(ReportQuery::Report {
                report_id: req.report_id.clone(),
            })
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_found)?;
        if report.reporter_id != req.caller_id {
            return Err(not_found());
        }
        Ok(Response::new(to_msg(&report)))
    }
}
