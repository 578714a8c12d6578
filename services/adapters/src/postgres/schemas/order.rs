//! The order service's tables (`order::store`).

use async_trait::async_trait;
use order::{Order, OrderQuery, OrderSchema, OrderStatus, OrderWrite};
use platform::ports::{StoreError, Versioned};
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/order");

const ORDER_COLUMNS: &str = "o.order_id::text AS order_id, o.customer_id, o.item, o.amount_minor, \
     o.currency, o.ad_id, o.ad_version, o.status, o.history, o.status_since_ms, o.created_ms, o.reason, o.trace, o.version";

fn status(s: &str) -> Result<OrderStatus, sqlx::Error> {
    OrderStatus::parse(s)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown order status {s:?}").into()))
}

fn order(row: &PgRow) -> Result<Versioned<Order>, StoreError> {
    let decode = || -> Result<Versioned<Order>, sqlx::Error> {
        let history: Vec<String> = row.try_get("history")?;
        let since: i64 = row.try_get("status_since_ms")?;
        let created: i64 = row.try_get("created_ms")?;
        Ok(Versioned {
            version: row.try_get("version")?,
            value: Order {
                order_id: row.try_get("order_id")?,
                customer_id: row.try_get("customer_id")?,
                item: row.try_get("item")?,
                amount_minor: row.try_get("amount_minor")?,
                currency: row.try_get("currency")?,
                ad_id: row.try_get("ad_id")?,
                ad_version: row.try_get("ad_version")?,
                status: status(row.try_get("status")?)?,
                history: history
                    .iter()
                    .map(|s| status(s))
                    .collect::<Result<_, _>>()?,
                status_since_ms: u64::try_from(since).unwrap_or(0),
                created_ms: u64::try_from(created).unwrap_or(0),
                reason: row.try_get("reason")?,
                trace: row.try_get("trace")?,
            },
        })
    };
    decode().map_err(|e| store_error("decode order", e))
}

fn history(o: &Order) -> Vec<&'static str> {
    o.history.iter().map(|s| s.as_str()).collect()
}

fn since(o: &Order) -> i64 {
    i64::try_from(o.status_since_ms).unwrap_or(i64::MAX)
}

fn created(o: &Order) -> i64 {
    i64::try_from(o.created_ms).unwrap_or(i64::MAX)
}

#[async_trait]
impl PgSchema for OrderSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &OrderWrite) -> Result<(), StoreError> {
        match write {
            OrderWrite::Create {
                order: o,
                request_key,
            } => {
                let rows = sqlx::query(
                    "INSERT INTO orders (order_id, customer_id, item, amount_minor, currency, status, \
                     history, status_since_ms, reason, ad_id, ad_version, trace, created_ms, version) \
                     VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&o.order_id)
                .bind(&o.customer_id)
                .bind(&o.item)
                .bind(o.amount_minor)
                .bind(&o.currency)
                .bind(o.status.as_str())
                .bind(history(o))
                .bind(since(o))
                .bind(&o.reason)
                .bind(&o.ad_id)
                .bind(o.ad_version)
                .bind(&o.trace)
                .bind(created(o))
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert order", e))?;
                one_row(rows.rows_affected(), "orders", &o.order_id)?;
                let rows = sqlx::query(
                    "INSERT INTO order_requests (request_key, order_id) VALUES ($1, $2::uuid) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(request_key)
                .bind(&o.order_id)
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("insert order request", e))?;
                one_row(rows.rows_affected(), "order_requests", request_key)
            }
            OrderWrite::Update { order: o, version } => {
                let rows = sqlx::query(
                    "UPDATE orders SET customer_id = $2, item = $3, amount_minor = $4, currency = $5, \
                     status = $6, history = $7, status_since_ms = $8, reason = $9, ad_id = $11, \
                     ad_version = $12, trace = $13, created_ms = $14, version = version + 1 \
                     WHERE order_id = $1::uuid AND version = $10",
                )
                .bind(&o.order_id)
                .bind(&o.customer_id)
                .bind(&o.item)
                .bind(o.amount_minor)
                .bind(&o.currency)
                .bind(o.status.as_str())
                .bind(history(o))
                .bind(since(o))
                .bind(&o.reason)
                .bind(version)
                .bind(&o.ad_id)
                .bind(o.ad_version)
                .bind(&o.trace)
                .bind(created(o))
                .execute(&mut *db)
                .await
                .map_err(|e| store_error("update order", e))?;
                one_row(rows.rows_affected(), "orders", &o.order_id)
            }
        }
    }

    async fn query(
        db: &mut PgConnection,
        query: &OrderQuery,
    ) -> Result<Option<Versioned<Order>>, StoreError> {
        let row = match query {
            OrderQuery::Order { order_id } => {
                // Not a UUID: no such order (the column would refuse to compare).
                if uuid::Uuid::parse_str(order_id).is_err() {
                    return Ok(None);
                }
                sqlx::query(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders o WHERE o.order_id = $1::uuid"
                ))
                .bind(order_id)
                .fetch_optional(&mut *db)
                .await
            }
            OrderQuery::ByRequest { request_key } => {
                sqlx::query(&format!(
                    "SELECT {ORDER_COLUMNS} FROM order_requests r JOIN orders o USING (order_id) \
                     WHERE r.request_key = $1"
                ))
                .bind(request_key)
                .fetch_optional(&mut *db)
                .await
            }
        }
        .map_err(|e| store_error("read order", e))?;
        row.as_ref().map(order).transpose()
    }
}
