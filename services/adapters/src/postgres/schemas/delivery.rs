//! The delivery service's shipments (`delivery::store`).

use async_trait::async_trait;
use delivery::{DeliveryQuery, DeliverySchema, DeliveryWrite, Shipment};
use platform::ports::{StoreError, Versioned};
use sqlx::{migrate::Migrator, PgConnection};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/delivery");

#[async_trait]
impl PgSchema for DeliverySchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &DeliveryWrite) -> Result<(), StoreError> {
        let (s, rows) = match write {
            DeliveryWrite::Insert(s) => {
                let rows = sqlx::query(
                    "INSERT INTO shipments (order_id, address, stage, courier_id, cancel_requested, \
                     trace, version) VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT DO NOTHING",
                )
                .bind(&s.order_id)
                .bind(&s.address)
                .bind(&s.stage)
                .bind(&s.courier_id)
                .bind(s.cancel_requested)
                .bind(&s.trace)
                .execute(&mut *db)
                .await;
                (s, rows)
            }
            DeliveryWrite::Update {
                shipment: s,
                version,
            } => {
                let rows = sqlx::query(
                    "UPDATE shipments SET address = $2, stage = $3, courier_id = $4, \
                     cancel_requested = $5, trace = $7, version = version + 1 \
                     WHERE order_id = $1 AND version = $6",
                )
                .bind(&s.order_id)
                .bind(&s.address)
                .bind(&s.stage)
                .bind(&s.courier_id)
                .bind(s.cancel_requested)
                .bind(version)
                .bind(&s.trace)
                .execute(&mut *db)
                .await;
                (s, rows)
            }
        };
        let rows = rows.map_err(|e| store_error("write shipment", e))?;
        one_row(rows.rows_affected(), "shipments", &s.order_id)
    }

    async fn query(
        db: &mut PgConnection,
        query: &DeliveryQuery,
    ) -> Result<Option<Versioned<Shipment>>, StoreError> {
        let DeliveryQuery::Shipment { order_id } = query;
        type Row = (String, String, String, Option<String>, bool, String, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT order_id, address, stage, courier_id, cancel_requested, trace, version \
             FROM shipments WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&mut *db)
        .await
        .map_err(|e| store_error("read shipment", e))?;
        Ok(row.map(
            |(order_id, address, stage, courier_id, cancel_requested, trace, version)| Versioned {
                version,
                value: Shipment {
                    order_id,
                    address,
                    stage,
                    courier_id,
                    cancel_requested,
                    trace,
                },
            },
        ))
    }
}
