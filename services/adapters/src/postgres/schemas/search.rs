//! The search service's index (`search::store`): PostgreSQL full-text search.

use async_trait::async_trait;
use platform::ports::StoreError;
use search::{
    store::{Doc, Hit, Search, Sort},
    SearchAnswer, SearchQuery, SearchSchema, SearchWrite,
};
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Postgres, QueryBuilder, Row};

use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/search");

const COLUMNS: &str = "ad_id, version, owner_id, title, description, price_minor, currency, \
     category, region, status, created_ms";

fn doc(row: &PgRow) -> Result<Doc, sqlx::Error> {
    Ok(Doc {
        ad_id: row.try_get("ad_id")?,
        version: row.try_get("version")?,
        owner_id: row.try_get("owner_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        price_minor: row.try_get("price_minor")?,
        currency: row.try_get("currency")?,
        category: row.try_get("category")?,
        region: row.try_get("region")?,
        status: row.try_get("status")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// The SQL of one search: filters, the text match, the sort, keyset pagination. Sorts other
/// than relevance order by the columns themselves, so the indexes of migration 0102 serve
/// them without sorting the table.
fn search_sql(s: &Search) -> QueryBuilder<'_, Postgres> {
    let text = !s.text.trim().is_empty();
    let mut q = QueryBuilder::new("WITH q AS (SELECT ");
    if text {
        q.push("websearch_to_tsquery('russian', ")
            .push_bind(&s.text)
            .push(") || websearch_to_tsquery('english', ")
            .push_bind(&s.text)
            .push(")");
    } else {
        q.push("NULL::tsquery");
    }
    q.push(" AS query) SELECT ").push(COLUMNS).push(", ");
    // (sort key as returned, the column the rows are ordered by, descending)
    let (key, column, descending) = match s.sort {
        Sort::Relevance if text => ("ts_rank(document, q.query)::float8", "rank", true),
        Sort::Relevance | Sort::Newest => ("created_ms::float8", "created_ms", true),
        Sort::PriceAsc => ("price_minor::float8", "price_minor", false),
        Sort::PriceDesc => ("price_minor::float8", "price_minor", true),
    };
    q.push(key).push(" AS key");
    if column == "rank" {
        q.push(", ts_rank(document, q.query) AS rank");
    }
    q.push(" FROM ad_index, q WHERE ");
    // One status is an equality, which an index on (status, ...) serves in order; `= ANY`
    // would not keep the index's order.
    match s.statuses.as_slice() {
        [one] => q.push("status = ").push_bind(one),
        many => q.push("status = ANY(").push_bind(many).push(")"),
    };
    if let Some(c) = &s.category {
        q.push(" AND category = ").push_bind(c);
    }
    if let Some(r) = &s.region {
        q.push(" AND region = ").push_bind(r);
    }
    if let Some(p) = s.price_min {
        q.push(" AND price_minor >= ").push_bind(p);
    }
    if let Some(p) = s.price_max {
        q.push(" AND price_minor <= ").push_bind(p);
    }
    if text {
        q.push(" AND document @@ q.query");
    }
    if let Some(after) = &s.after {
        let (open, cast) = if column == "rank" {
            ("(ts_rank(document, q.query)::float8, ad_id)", "::float8")
        } else if column == "created_ms" {
            ("(created_ms, ad_id)", "::float8::bigint")
        } else {
            ("(price_minor, ad_id)", "::float8::bigint")
        };
        q.push(" AND ")
            .push(open)
            .push(if descending { " < (" } else { " > (" })
            .push_bind(after.key)
            .push(cast)
            .push(", ")
            .push_bind(&after.ad_id)
            .push(")");
    }
    let direction = if descending { "DESC" } else { "ASC" };
    let order = if column == "rank" { "rank" } else { column };
    q.push(format!(
        " ORDER BY {order} {direction}, ad_id {direction} LIMIT "
    ))
    .push_bind(i64::from(s.limit.min(search::store::LIMIT_MAX)));
    q
}

#[async_trait]
impl PgSchema for SearchSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &SearchWrite) -> Result<(), StoreError> {
        let SearchWrite::Upsert(d) = write;
        // An older or equal version changes nothing (and is no error).
        sqlx::query(&format!(
            "INSERT INTO ad_index ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (ad_id) DO UPDATE SET version = EXCLUDED.version, \
             owner_id = EXCLUDED.owner_id, title = EXCLUDED.title, \
             description = EXCLUDED.description, price_minor = EXCLUDED.price_minor, \
             currency = EXCLUDED.currency, category = EXCLUDED.category, \
             region = EXCLUDED.region, status = EXCLUDED.status, created_ms = EXCLUDED.created_ms \
             WHERE ad_index.version < EXCLUDED.version"
        ))
        .bind(&d.ad_id)
        .bind(d.version)
        .bind(&d.owner_id)
        .bind(&d.title)
        .bind(&d.description)
        .bind(d.price_minor)
        .bind(&d.currency)
        .bind(&d.category)
        .bind(&d.region)
        .bind(&d.status)
        .bind(d.created_ms)
        .execute(&mut *db)
        .await
        .map_err(|e| store_error("index ad", e))?;
        Ok(())
    }

    async fn query(db: &mut PgConnection, query: &SearchQuery) -> Result<SearchAnswer, StoreError> {
        match query {
            SearchQuery::Doc { ad_id } => {
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM ad_index WHERE ad_id = $1"))
                    .bind(ad_id)
                    .fetch_optional(&mut *db)
                    .await
                    .map_err(|e| store_error("read document", e))?;
                let d = row
                    .as_ref()
                    .map(doc)
                    .transpose()
                    .map_err(|e| store_error("decode document", e))?;
                Ok(SearchAnswer::Doc(d))
            }
            SearchQuery::Versions => {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT ad_id, version FROM ad_index ORDER BY ad_id")
                        .fetch_all(&mut *db)
                        .await
                        .map_err(|e| store_error("read versions", e))?;
                Ok(SearchAnswer::Versions(rows))
            }
            SearchQuery::Search(s) => {
                let rows = search_sql(s)
                    .build()
                    .fetch_all(&mut *db)
                    .await
                    .map_err(|e| store_error("search", e))?;
                let hits = rows
                    .iter()
                    .map(|r| {
                        Ok(Hit {
                            doc: doc(r)?,
                            key: r.try_get("key")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| store_error("decode hits", e))?;
                Ok(SearchAnswer::Page(hits))
            }
        }
    }
}
