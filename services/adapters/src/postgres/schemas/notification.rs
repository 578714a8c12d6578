//! The notification service's tables (`notification::store`).

use async_trait::async_trait;
use notification::{
    Feed, FeedPage, NotificationAnswer, NotificationQuery, NotificationSchema, NotificationWrite,
    Outgoing, Update,
};
use platform::ports::{StoreError, Versioned};
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

const OUTGOING_COLUMNS: &str = "key, recipient, channel, template, request, subject, body, \
     status, attempts, reason, provider_id, next_attempt_ms, created_ms, updated_ms";

fn outgoing(row: &PgRow) -> Result<Versioned<Outgoing>, sqlx::Error> {
    Ok(Versioned {
        version: row.try_get("version")?,
        value: Outgoing {
            key: row.try_get("key")?,
            recipient: row.try_get("recipient")?,
            channel: row.try_get("channel")?,
            template: row.try_get("template")?,
            request: row.try_get("request")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            reason: row.try_get("reason")?,
            provider_id: row.try_get("provider_id")?,
            next_attempt_ms: row.try_get("next_attempt_ms")?,
            created_ms: row.try_get("created_ms")?,
            updated_ms: row.try_get("updated_ms")?,
            trace: row.try_get("trace")?,
        },
    })
}

/// Inserts `o` at version 1 (`version: None`) or replaces it at `version`.
async fn put_outgoing(
    db: &mut PgConnection,
    o: &Outgoing,
    version: Option<i64>,
) -> Result<(), StoreError> {
    let sql = match version {
        None => format!(
            "INSERT INTO outgoing ({OUTGOING_COLUMNS}, trace, version) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1) \
             ON CONFLICT DO NOTHING"
        ),
        Some(_) => "UPDATE outgoing SET recipient = $2, channel = $3, template = $4, \
             request = $5, subject = $6, body = $7, status = $8, attempts = $9, reason = $10, \
             provider_id = $11, next_attempt_ms = $12, created_ms = $13, updated_ms = $14, \
             trace = $16, version = version + 1 WHERE key = $1 AND version = $15"
            .to_owned(),
    };
    let rows = sqlx::query(&sql)
        .bind(&o.key)
        .bind(&o.recipient)
        .bind(&o.channel)
        .bind(&o.template)
        .bind(&o.request)
        .bind(&o.subject)
        .bind(&o.body)
        .bind(&o.status)
        .bind(o.attempts)
        .bind(&o.reason)
        .bind(&o.provider_id)
        .bind(o.next_attempt_ms)
        .bind(o.created_ms)
        .bind(o.updated_ms);
    let rows = match version {
        Some(v) => rows.bind(v).bind(&o.trace),
        None => rows.bind(&o.trace),
    }
    .execute(&mut *db)
    .await
    .map_err(|e| store_error("write message", e))?;
    one_row(rows.rows_affected(), "outgoing", &o.key)
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
            NotificationWrite::Queue(o) => put_outgoing(db, o, None).await,
            NotificationWrite::Settle { outgoing, version } => {
                put_outgoing(db, outgoing, Some(*version)).await
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &NotificationQuery,
    ) -> Result<NotificationAnswer, StoreError> {
        let (recipient, after, limit) = match query {
            NotificationQuery::Feed {
                recipient,
                after,
                limit,
            } => (recipient, after, limit),
            NotificationQuery::Outgoing { key } => {
                let row = sqlx::query(&format!(
                    "SELECT {OUTGOING_COLUMNS}, trace, version FROM outgoing WHERE key = $1"
                ))
                .bind(key)
                .fetch_optional(&mut *db)
                .await
                .map_err(|e| store_error("read message", e))?;
                let o = row
                    .as_ref()
                    .map(outgoing)
                    .transpose()
                    .map_err(|e| store_error("decode message", e))?;
                return Ok(NotificationAnswer::Outgoing(o.map(Box::new)));
            }
        };
        // The updates first, then the head, in two statements: an update the first one saw
        // was committed with its feed (and its epoch), so the second sees that epoch and a
        // last seq at least as high. The other order could pair a head from before the feed
        // existed with updates from after: a session then held updates without their epoch
        // and reset itself ("the log moved on") on its next read. A head read (the
        // appender's) asks for no update: one round trip.
        let rows = if *limit == 0 {
            Vec::new()
        } else {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM updates WHERE recipient = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3"
            ))
            .bind(recipient)
            .bind(after)
            .bind(i64::from(*limit))
            .fetch_all(&mut *db)
            .await
            .map_err(|e| store_error("read updates", e))?
        };
        let head = sqlx::query(
            "SELECT (SELECT epoch FROM feeds WHERE recipient = $1) AS epoch, \
                    coalesce(min(seq), 0) AS first_seq, coalesce(max(seq), 0) AS last_seq \
             FROM updates WHERE recipient = $1",
        )
        .bind(recipient)
        .fetch_one(&mut *db)
        .await
        .map_err(|e| store_error("read feed", e))?;
        let decode = |e| store_error("decode feed", e);
        Ok(NotificationAnswer::Feed(FeedPage {
            epoch: head.try_get("epoch").map_err(decode)?,
            first_seq: head.try_get("first_seq").map_err(decode)?,
            last_seq: head.try_get("last_seq").map_err(decode)?,
            updates: rows
                .iter()
                .map(update)
                .collect::<Result<_, _>>()
                .map_err(decode)?,
        }))
    }
}
