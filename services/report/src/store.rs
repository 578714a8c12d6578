//! The report service's typed store: reports and their decisions. SQL: `migrations/report/`;
//! Postgres twin: `adapters::postgres::schemas::report`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError};
use serde::{Deserialize, Serialize};

/// What may be reported.
pub const TARGET_KINDS: [&str; 2] = ["AD", "USER"];
/// Why.
pub const REASONS: [&str; 5] = ["spam", "scam", "prohibited", "offensive", "other"];
/// Bound on a comment (characters).
pub const COMMENT_CHARS_MAX: usize = 1000;

/// A report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub report_id: String,
    pub reporter_id: String,
    pub target_kind: String,
    pub target_id: String,
    pub reason: String,
    pub comment: String,
    /// PROCESSING until decided, then DECIDED.
    pub status: String,
    /// BAN or OK once DECIDED, else empty.
    pub decision: String,
    pub decision_reason: String,
    pub created_ms: i64,
    pub decided_ms: i64,
}

fn check(r: &Report) -> Result<(), StoreError> {
    let chars = |s: &str| s.chars().count();
    let decided = match r.status.as_str() {
        "PROCESSING" => r.decision.is_empty(),
        "DECIDED" => matches!(r.decision.as_str(), "BAN" | "OK"),
        _ => false,
    };
    let ok = (1..=64).contains(&chars(&r.report_id))
        && (1..=64).contains(&chars(&r.reporter_id))
        && TARGET_KINDS.contains(&r.target_kind.as_str())
        && (1..=64).contains(&chars(&r.target_id))
        && REASONS.contains(&r.reason.as_str())
        && chars(&r.comment) <= COMMENT_CHARS_MAX
        && chars(&r.decision_reason) <= 200
        && decided;
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "report {} breaks the reports table's constraints",
            r.report_id
        )))
    }
}

/// A write of the report store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportWrite {
    /// A new PROCESSING report; conflicts when its id is taken or its reporter has reported
    /// its target already.
    Create(Report),
    /// A PROCESSING report decided; conflicts unless it is PROCESSING.
    Decide {
        report_id: String,
        decision: String,
        reason: String,
        at_ms: i64,
    },
}

/// A read of the report store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportQuery {
    /// The report `report_id` (none or one).
    Report { report_id: String },
    /// `reporter_id`'s report of the target (none or one).
    OfTarget {
        reporter_id: String,
        target_kind: String,
        target_id: String,
    },
    /// Reports `reporter_id` made at or after `since_ms`, at most `limit`, newest first.
    MadeBy {
        reporter_id: String,
        since_ms: i64,
        limit: u32,
    },
}

/// The report store's table in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportModel {
    pub reports: BTreeMap<String, Report>,
}

/// The report store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportSchema;

impl Schema for ReportSchema {
    type Write = ReportWrite;
    type Query = ReportQuery;
    type Answer = Vec<Report>;
    type Model = ReportModel;

    fn apply(m: &mut ReportModel, write: ReportWrite) -> Result<(), StoreError> {
        match write {
            ReportWrite::Create(r) => {
                check(&r)?;
                if r.status != "PROCESSING" {
                    return Err(StoreError::Fatal("a new report is PROCESSING".into()));
                }
                let taken = m.reports.contains_key(&r.report_id)
                    || m.reports.values().any(|o| {
                        o.reporter_id == r.reporter_id
                            && o.target_kind == r.target_kind
                            && o.target_id == r.target_id
                    });
                if taken {
                    return Err(StoreError::conflict("reports", &r.report_id));
                }
                m.reports.insert(r.report_id.clone(), r);
            }
            ReportWrite::Decide {
                report_id,
                decision,
                reason,
                at_ms,
            } => {
                let Some(current) = m
                    .reports
                    .get(&report_id)
                    .filter(|r| r.status == "PROCESSING")
                else {
                    return Err(StoreError::conflict("reports", &report_id));
                };
                let decided = Report {
                    status: "DECIDED".into(),
                    decision,
                    decision_reason: reason,
                    decided_ms: at_ms,
                    ..current.clone()
                };
                check(&decided)?;
                m.reports.insert(report_id, decided);
            }
        }
        Ok(())
    }

    fn query(m: &ReportModel, query: &ReportQuery) -> Vec<Report> {
        match query {
            ReportQuery::Report { report_id } => {
                m.reports.get(report_id).cloned().into_iter().collect()
            }
            ReportQuery::OfTarget {
                reporter_id,
                target_kind,
                target_id,
            } => m
                .reports
                .values()
                .filter(|r| {
                    &r.reporter_id == reporter_id
                        && &r.target_kind == target_kind
                        && &r.target_id == target_id
                })
                .cloned()
                .collect(),
            ReportQuery::MadeBy {
                reporter_id,
                since_ms,
                limit,
            } => {
                let mut mine: Vec<Report> = m
                    .reports
                    .values()
                    .filter(|r| &r.reporter_id == reporter_id && r.created_ms >= *since_ms)
                    .cloned()
                    .collect();
                mine.sort_by(|a, b| {
                    (b.created_ms, &b.report_id).cmp(&(a.created_ms, &a.report_id))
                });
                mine.truncate(*limit as usize);
                mine
            }
        }
    }
}
