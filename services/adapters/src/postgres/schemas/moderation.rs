//! The moderation service's table (`moderation::store`).

use async_trait::async_trait;
use moderation::{Decision, ModerationQuery, ModerationSchema, ModerationWrite};
use platform::ports::StoreError;
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/moderation");

const COLUMNS: &str =
    "decision_id, task_id, target_kind, target_id, decision, reason, worker, decided_ms";

fn decision(row: &PgRow) -> Result<Decision, sqlx::Error> {
    Ok(Decision {
        decision_id: row.try_get("decision_id")?,
        task_id: row.try_get("task_id")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        decision: row.try_get("decision")?,
        reason: row.try_get("reason")?,
        worker: row.try_get("worker")?,
        decided_ms: row.try_get("decided_ms")?,
    })
}

#[async_trait]
impl PgSchema for ModerationSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &ModerationWrite) -> Result<(), StoreError> {
        match write {
            ModerationWrite::Decide(d) => {
                let rows = sqlx::query(&format!(
                    "INSERT INTO decisions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(&d.decision_id)
                .bind(&d.task_id)
                .bind(&d.target_kind)
                .bind(&d.target_id)
                .bind(&d.decision)
                .bind(&d.reason)
                .bind(&d.worker)
                .bind(d.decided_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert decision", e))?;
                one_row(rows.rows_affected(), "decisions", &d.decision_id)
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &ModerationQuery,
    ) -> Result<Vec<Decision>, StoreError> {
        let rows = match query {
            ModerationQuery::OfTask { task_id } => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM decisions WHERE task_id = $1 \
                     ORDER BY decided_ms, decision_id COLLATE \"C\""
                ))
                .bind(task_id)
                .fetch_all(&mut *db)
                .await
            }
        }
        .map_err(|e| store_error("read decisions", e))?;
        rows.iter()
            .map(decision)
            .collect::<Result<_, _>>()
            .map_err(|e| store_error("decode decision", e))
    }
}
