//! The notification service's tables (`notification::store`).

use async_trait::async_trait;
use notification::{
    Feed, FeedPage, NotificationQuery, NotificationSchema, NotificationWrite, Update,
};
use platform::ports::StoreError;
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/notification");

const COLUMNS: &str = "recipient, seq, kind, subject, body, created_ms";

fn update(row: &PgRow) -> Result<Update, sqlx::Error> {
    Ok(Update {
        recipient: row.try_get("recipient")?,
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        created_ms: row.try_get("created_ms")?,
    })
}

async fn open(db: &mut PgConnection, f: &Feed) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO feeds (recipient, epoch, created_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&f.recipient)
    .bind(&f.epoch)
    .bind(f.created_ms)
    .execute(&mut *db)
    .await
    .map_err(|e| store_error("open feed", e))?;
    Ok(())
}

#[async_trait]
impl PgSchema for NotificationSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &NotificationWrite) -> Result<(), StoreError> {
        match write {
            NotificationWrite::Open(f) => open(db, f).await,
            NotificationWrite::Append(u) => {
                let rows = sqlx::query(&format!(
                    "INSERT INTO updates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(&u.recipient)
                .bind(u.seq)
                .bind(&u.kind)
                .bind(&u.subject)
                .bind(&u.body)
                .bind(u.created_ms)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("append update", e))?;
                one_row(
                    rows.rows_affected(),
                    "updates",
                    &format!("{}/{}", u.recipient, u.seq),
                )
            }
            NotificationWrite::Trim {
                recipient,
                keep_from,
            } => {
                sqlx::query(
                    "DELETE FROM updates WHERE recipient = $1 AND seq < LEAST($2, \
                     (SELECT coalesce(max(seq), 0) FROM updates WHERE recipient = $1))",
                )
                .bind(recipient)
                .bind(keep_from)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("trim feed", e))?;
                Ok(())
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &NotificationQuery,
    ) -> Result<FeedPage, StoreError> {
        let NotificationQuery::Feed {
            recipient,
            after,
            limit,
        } = query;
        let head = sqlx::query(
            "SELECT (SELECT epoch FROM feeds WHERE recipient = $1) AS epoch, \
                    coalesce(min(seq), 0) AS first_seq, coalesce(max(seq), 0) AS last_seq \
             FROM updates WHERE recipient = $1",
        )
        .bind(recipient)
        .fetch_one(&mut *db)
        .await
        .map_err(|e| store_error("read feed", e))?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM updates WHERE recipient = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        ))
        .bind(recipient)
        .bind(after)
        .bind(i64::from(*limit))
        .fetch_all(&mut *db)
        .await
        .map_err(|e| store_error("read updates", e))?;
        let decode = |e| store_error("decode feed", e);
        Ok(FeedPage {
            epoch: head.try_get("epoch").map_err(decode)?,
            first_seq: head.try_get("first_seq").map_err(decode)?,
            last_seq: head.try_get("last_seq").map_err(decode)?,
            updates: rows
                .iter()
                .map(update)
                .collect::<Result<_, _>>()
                .map_err(decode)?,
        })
    }
}
