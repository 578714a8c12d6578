//! Reports: `POST /v1/reports` `{target_kind, target_id, reason, comment?}` → 202 with
//! `Location` of the report, which reads PROCESSING until the moderation workers decide it,
//! then DECIDED with the decision; `GET /v1/reports/{id}` shows a report to its reporter
//! only (404 for anyone else). Reporting the same target again answers the first report.

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use contracts::report::{
    report_service_client::ReportServiceClient, CreateReportRequest, ReportRef,
};
use platform::{
    grpc,
    http::{ApiJson, Problem},
};
use serde::{Deserialize, Serialize};

use crate::{auth::Caller, errors::problem, AppState};

const SERVICE: &str = "report";

/// The body of `POST /v1/reports`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// `AD` or `USER`.
    #[schema(pattern = "^(AD|USER)$")]
    pub target_kind: String,
    #[schema(min_length = 1, max_length = 64)]
    pub target_id: String,
    /// `spam`, `scam`, `prohibited`, `offensive` or `other`.
    #[schema(pattern = "^(spam|scam|prohibited|offensive|other)$")]
    pub reason: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub comment: String,
}

/// A report as its reporter sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReportView {
    pub report_id: String,
    pub target_kind: String,
    pub target_id: String,
    pub reason: String,
    pub comment: String,
    /// `PROCESSING` until decided, then `DECIDED`.
    pub status: String,
    /// `BAN` or `OK` once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    pub created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_ms: Option<i64>,
}

impl From<contracts::report::Report> for ReportView {
    fn from(r: contracts::report::Report) -> Self {
        let decided = r.status == "DECIDED";
        ReportView {
            report_id: r.report_id,
            target_kind: r.target_kind,
            target_id: r.target_id,
            reason: r.reason,
            comment: r.comment,
            status: r.status,
            decision: decided.then_some(r.decision),
            decision_reason: decided.then_some(r.decision_reason),
            created_ms: r.created_ms,
            decided_ms: decided.then_some(r.decided_ms),
        }
    }
}

fn failed() -> impl Fn(tonic::Status) -> Problem {
    move |e| problem(SERVICE, e)
}

#[utoipa::path(
    post,
    path = "/v1/reports",
    tag = "reports",
    request_body = ReportBody,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the report is being processed (Location: the report)", body = ReportView, headers(("Location" = String))),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 410, description = "The ad was banned by moderation", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such ad to report", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request (JSON, header or parameter)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many reports lately (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ReportBody>,
) -> Result<Response, Problem> {
    let kind = body.target_kind.to_ascii_uppercase();
    if kind == "AD" {
        // Only what the reporter can see is reported.
        crate::ads::visible(&st, &body.target_id, Some(&caller)).await?;
    }
    let req = CreateReportRequest {
        reporter_id: caller.user_id,
        target_kind: kind,
        target_id: body.target_id,
        reason: body.reason,
        comment: body.comment,
    };
    let report = st
        .report
        .call(|ch| async move {
            ReportServiceClient::with_interceptor(ch, platform::trace::inject)
                .create_report(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    let location = format!("/v1/reports/{}", report.report_id);
    let mut response = (StatusCode::ACCEPTED, Json(ReportView::from(report))).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/reports/{id}",
    tag = "reports",
    params(("id" = String, Path, description = "The report's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report: PROCESSING, or DECIDED with the decision", body = ReportView),
        (status = 401, description = "No valid access token (WWW-Authenticate: Bearer)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such report of the caller's", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed request", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let not_found = || Problem::not_found(format!("no report {id}"));
    if grpc::require_id(SERVICE, "report_id", &id).is_err() {
        return Err(not_found());
    }
    let req = ReportRef {
        report_id: id.clone(),
        caller_id: caller.user_id,
    };
    let report = st
        .report
        .call(|ch| async move {
            ReportServiceClient::with_interceptor(ch, platform::trace::inject)
                .get_report(grpc::request(req, None))
                .await
        })
        .await
        .map_err(failed())?
        .into_inner();
    Ok(Json(ReportView::from(report)).into_response())
}
