//! The payment service's tables (`payment::store`).

use async_trait::async_trait;
use payment::{
    store::{OrderPayments, PaymentAnswer, PaymentQuery, PaymentWrite},
    Payment, PaymentSchema, PaymentStatus,
};
use platform::ports::{StoreError, Versioned};
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/payment");

const PAYMENT_COLUMNS: &str =
    "key, order_id, amount_minor, currency, status, charge_id, refund_requested, reason, trace, \
     version";

/// [`PAYMENT_COLUMNS`] of the `p` alias, as [`payment`] reads them.
const PAYMENT_COLUMNS_OF_P: &str = "p.key, p.order_id, p.amount_minor, p.currency, p.status, \
     p.charge_id, p.refund_requested, p.reason, p.trace, p.version";

fn payment(row: &PgRow) -> Result<Versioned<Payment>, StoreError> {
    let decode = || -> Result<Versioned<Payment>, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(Versioned {
            version: row.try_get("version")?,
            value: Payment {
                key: row.try_get("key")?,
                order_id: row.try_get("order_id")?,
                amount_minor: row.try_get("amount_minor")?,
                currency: row.try_get("currency")?,
                status: PaymentStatus::parse(&status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown payment status {status:?}").into())
                })?,
                charge_id: row.try_get("charge_id")?,
                refund_requested: row.try_get("refund_requested")?,
                reason: row.try_get("reason")?,
                trace: row.try_get("trace")?,
            },
        })
    };
    decode().map_err(|e| store_error("decode payment", e))
}

#[async_trait]
impl PgSchema for PaymentSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &PaymentWrite) -> Result<(), StoreError> {
        match write {
            PaymentWrite::PutOrder {
                order_id,
                refund_requested,
                expected,
            } => {
                let rows = match expected {
                    None => {
                        sqlx::query(
                            "INSERT INTO order_payments (order_id, refund_requested, version) \
                         VALUES ($1, $2, 1) ON CONFLICT DO NOTHING",
                        )
                        .bind(order_id)
                        .bind(refund_requested)
                        .execute(&mut *db)
                        .await
                    }
                    Some(v) => sqlx::query(
                        "UPDATE order_payments SET refund_requested = $2, version = version + 1 \
                         WHERE order_id = $1 AND version = $3",
                    )
                    .bind(order_id)
                    .bind(refund_requested)
                    .bind(v)
                    .execute(&mut *db)
                    .await,
                }
                .map_err(|e| store_error("write order payments", e))?;
                one_row(rows.rows_affected(), "order_payments", order_id)
            }
            PaymentWrite::InsertPayment(p) => {
                let rows = sqlx::query(
                    "INSERT INTO payments (key, order_id, amount_minor, currency, status, charge_id, \
                     refund_requested, reason, trace, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&p.key)
                .bind(&p.order_id)
                .bind(p.amount_minor)
                .bind(&p.currency)
                .bind(p.status.as_str())
                .bind(&p.charge_id)
                .bind(p.refund_requested)
                .bind(&p.reason)
                .bind(&p.trace)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert payment", e))?;
                one_row(rows.rows_affected(), "payments", &p.key)
            }
            PaymentWrite::UpdatePayment {
                payment: p,
                version,
            } => {
                let current: Option<(String, i64)> = sqlx::query_as(
                    "SELECT order_id, version FROM payments WHERE key = $1 FOR UPDATE",
                )
                .bind(&p.key)
                .fetch_optional(&mut *db)
                .await
                .map_err(|e| store_error("read payment", e))?;
                match current {
                    Some((order_id, v)) if v == *version => {
                        if order_id != p.order_id {
                            return Err(StoreError::Fatal(format!(
                                "payment {} cannot move to another order",
                                p.key
                            )));
                        }
                    }
                    _ => return Err(StoreError::conflict("payments", &p.key)),
                }
                let rows = sqlx::query(
                    "UPDATE payments SET amount_minor = $2, currency = $3, status = $4, \
                     charge_id = $5, refund_requested = $6, reason = $7, trace = $9, \
                     version = version + 1 WHERE key = $1 AND version = $8",
                )
                .bind(&p.key)
                .bind(p.amount_minor)
                .bind(&p.currency)
                .bind(p.status.as_str())
                .bind(&p.charge_id)
                .bind(p.refund_requested)
                .bind(&p.reason)
                .bind(version)
                .bind(&p.trace)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("update payment", e))?;
                one_row(rows.rows_affected(), "payments", &p.key)
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &PaymentQuery,
    ) -> Result<PaymentAnswer, StoreError> {
        match query {
            PaymentQuery::Payment { key } => {
                let row = sqlx::query(&format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE key = $1"
                ))
                .bind(key)
                .fetch_optional(&mut *db)
                .await
                .map_err(|e| store_error("read payment", e))?;
                Ok(PaymentAnswer::Payment(
                    row.as_ref().map(payment).transpose()?,
                ))
            }
            PaymentQuery::Order { order_id } => {
                // One statement, so the order's flag and its payments come from one snapshot
                // (a refund committing in between cannot be half seen).
                let rows = sqlx::query(&format!(
                    "SELECT o.refund_requested AS order_refund_requested, o.version AS order_version, \
                     p.seq, {PAYMENT_COLUMNS_OF_P} \
                     FROM order_payments o LEFT JOIN payments p ON p.order_id = o.order_id \
                     WHERE o.order_id = $1 ORDER BY p.seq"
                ))
                .bind(order_id)
                .fetch_all(&mut *db)
                .await
                .map_err(|e| store_error("read order payments", e))?;
                let Some(first) = rows.first() else {
                    return Ok(PaymentAnswer::Order(None));
                };
                let decode = |e| store_error("decode order payments", e);
                let refund_requested: bool =
                    first.try_get("order_refund_requested").map_err(decode)?;
                let version: i64 = first.try_get("order_version").map_err(decode)?;
                let mut payments = Vec::new();
                for row in &rows {
                    let seq: Option<i64> = row.try_get("seq").map_err(decode)?;
                    if seq.is_some() {
                        payments.push(payment(row)?);
                    }
                }
                Ok(PaymentAnswer::Order(Some(OrderPayments {
                    version,
                    refund_requested,
                    payments,
                })))
            }
        }
    }
}
