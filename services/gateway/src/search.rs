//! `GET /v1/search`: the REST face of the search service (public).
//!
//! Parameters: `q` (words; websearch syntax), `category`, `region`, `price_min`,
//! `price_max` (minor units), `sort` (`relevance` (default), `newest`, `price_asc`,
//! `price_desc`), `limit` (1..=100, default 20), `cursor` (the `next_cursor` of the previous
//! page). Only ACTIVE ads are found; the index follows the ads within moments, and reading
//! one's own write is not promised.

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use contracts::search::{search_service_client::SearchServiceClient, SearchRequest, SearchSort};
use platform::{grpc, http::Problem};
use serde::{Deserialize, Serialize};

use crate::{ads::Price, errors::problem, AppState};

const SERVICE: &str = "search";

/// The query string of `GET /v1/search`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words (websearch syntax).
    #[param(max_length = 200)]
    pub q: Option<String>,
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub category: Option<String>,
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub region: Option<String>,
    /// Minor units.
    #[param(minimum = 0)]
    pub price_min: Option<i64>,
    #[param(minimum = 0)]
    pub price_max: Option<i64>,
    /// `relevance` (default), `newest`, `price_asc` or `price_desc`.
    #[param(pattern = "^(relevance|newest|price_asc|price_desc)$")]
    pub sort: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One found ad.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SearchItem {
    pub ad_id: String,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub price: Price,
    pub category: String,
    pub region: String,
    pub version: i64,
    pub created_ms: i64,
}

/// A page of results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SearchResults {
    pub items: Vec<SearchItem>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "search",
    params(SearchParams, ("Cache-Control" = Option<String>, Header, description = "`no-cache` skips the gateway's page cache")),
    responses(
        (status = 200, description = "A page of ACTIVE ads", body = SearchResults),
        (status = 400, description = "Malformed or unknown parameter", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A parameter breaks a rule", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "A service behind the gateway cannot answer now (Retry-After)", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "A bug; the cause stays in the log", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn search(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let sort = match p.sort.as_deref() {
        None | Some("relevance") => SearchSort::Relevance,
        Some("newest") => SearchSort::Newest,
        Some("price_asc") => SearchSort::PriceAsc,
        Some("price_desc") => SearchSort::PriceDesc,
        Some(other) => {
            return Err(Problem::unprocessable(format!(
                "sort must be relevance, newest, price_asc or price_desc, not {other:?}"
            )))
        }
    };
    let req = SearchRequest {
        q: p.q.unwrap_or_default(),
        category: p.category.unwrap_or_default(),
        region: p.region.unwrap_or_default(),
        price_min: p.price_min.unwrap_or(0),
        price_max: p.price_max.unwrap_or(0),
        sort: sort as i32,
        limit: match p.limit {
            Some(0) => return Err(Problem::unprocessable("limit must be 1..=100")),
            other => other.unwrap_or(0),
        },
        cursor: p.cursor.unwrap_or_default(),
    };
    // Pages are cached per gateway for a few seconds (see `cache`); a client that asks with
    // `Cache-Control: no-cache` gets the index's answer (which is then cached).
    let fresh = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        });
    let key = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        req.q,
        req.category,
        req.region,
        req.price_min,
        req.price_max,
        req.sort,
        req.limit,
        req.cursor
    );
    if let Some(results) = st.cache.page(&key).filter(|_| !fresh) {
        return Ok(page_response(results));
    }
    let page = st
        .search
        .call(|ch| async move {
            SearchServiceClient::with_interceptor(ch, platform::trace::inject)
                .search(grpc::request(req, None))
                .await
        })
        .await
        .map_err(|e| problem(SERVICE, e))?
        .into_inner();
    let items = page
        .hits
        .into_iter()
        .map(|h| SearchItem {
            ad_id: h.ad_id,
            owner_id: h.owner_id,
            title: h.title,
            description: h.description,
            price: Price {
                amount_minor: h.price_minor,
                currency: h.currency,
            },
            category: h.category,
            region: h.region,
            version: h.version,
            created_ms: h.created_ms,
        })
        .collect();
    let results = SearchResults {
        items,
        next_cursor: (!page.next_cursor.is_empty()).then_some(page.next_cursor),
    };
    st.cache.put_page(key, results.clone());
    Ok(page_response(results))
}

fn page_response(results: SearchResults) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=5")],
        Json(results),
    )
        .into_response()
}
