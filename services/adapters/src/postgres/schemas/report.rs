//! The report service's table (`report::store`).

use async_trait::async_trait;
use platform::ports::StoreError;
use report::{Report, ReportQuery, ReportSchema, ReportWrite};
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/report");

const COLUMNS: &str = "report_id, reporter_id, target_kind, target_id, reason, comment, status, \
     decision, decision_reason, created_ms, decided_ms";

fn report(row: &PgRow) -> Result<Report, sqlx::Error> {
    Ok(Report {
        report_id: row.try_get("report_id")?,
        reporter_id: row.try_get("reporter_id")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        reason: row.try_get("reason")?,
        comment: row.try_get("comment")?,
        status: row.try_get("status")?,
        decision: row.try_get("decision")?,
        decision_reason: row.try_get("decision_reason")?,
        created_ms: row.try_get("created_ms")?,
        decided_ms: row.try_get("decided_ms")?,
    })
}

#[async_trait]
impl PgSchema for ReportSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &ReportWrite) -> Result<(), StoreError> {
        match write {
            ReportWrite::Create(r) => {
                if r.status != "PROCESSING" {
                    return Err(StoreError::Fatal("a new report is PROCESSING".into()));
                }
                let rows = sqlx::query(&format!(
                    "INSERT INTO reports ({COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
                ))
                .bind(&r.report_id)
                .bind(&r.reporter_id)
                .bind(&r.target_kind)
                .bind(&r.target_id)
                .bind(&r.reason)
                .bind(&r.comment)
                .bind(&r.status)
                .bind(&r.decision)
                .bind(&r.decision_reason)
                .bind(r.created_ms)
                .bind(r.decided_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert report", e))?;
                one_row(rows.rows_affected(), "reports", &r.report_id)
            }
            ReportWrite::Decide {
                report_id,
                decision,
                reason,
                at_ms,
            } => {
                let rows = sqlx::query(
                    "UPDATE reports SET status = 'DECIDED', decision = $2, decision_reason = $3, \
                     decided_ms = $4 WHERE report_id = $1 AND status = 'PROCESSING'",
                )
                .bind(report_id)
                .bind(decision)
                .bind(reason)
                .bind(at_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("decide report", e))?;
                one_row(rows.rows_affected(), "reports", report_id)
            }
        }
    }

    async fn query(db: &mut PgConnection, query: &ReportQuery) -> Result<Vec<Report>, StoreError> {
        let rows = match query {
            ReportQuery::Report { report_id } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM reports WHERE report_id = $1"
                ))
                .bind(report_id)
                .fetch_all(&mut *db)
                .await
            }
            ReportQuery::OfTarget {
                reporter_id,
                target_kind,
                target_id,
            } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM reports \
                     WHERE reporter_id = $1 AND target_kind = $2 AND target_id = $3"
                ))
                .bind(reporter_id)
                .bind(target_kind)
                .bind(target_id)
                .fetch_all(&mut *db)
                .await
            }
            ReportQuery::MadeBy {
                reporter_id,
                since_ms,
                limit,
            } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM reports WHERE reporter_id = $1 AND created_ms >= $2 \
                     ORDER BY created_ms DESC, report_id COLLATE \"C\" DESC LIMIT $3"
                ))
                .bind(reporter_id)
                .bind(since_ms)
                .bind(i64::from(*limit))
                .fetch_all(&mut *db)
                .await
            }
        }
        .map_err(|e| store_error("read reports", e))?;
        rows.iter()
            .map(report)
            .collect::<Result<_, _>>()
            .map_err(|e| store_error("decode report", e))
    }
}
