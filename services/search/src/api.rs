//! The gRPC face of the search service.

use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use contracts::search::{
    search_service_server::SearchService, SearchHit, SearchPage, SearchRequest, SearchSort,
};
use platform::{grpc::store_status, ports::Store, Mutants};
use tonic::{Request, Response, Status};

use crate::store::{After, Search, SearchAnswer, SearchQuery, SearchSchema, Sort, LIMIT_MAX};

const SERVICE: &str = "search";
/// Results per page when the request names none.
pub const DEFAULT_LIMIT: u32 = 20;
/// Bound on the words of a search.
const TEXT_CHARS_MAX: usize = 200;

pub(crate) struct SearchApi {
    pub store: Arc<dyn Store<SearchSchema>>,
    pub mutants: Mutants,
}

fn invalid(message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{SERVICE}: {message}"))
}

/// The opaque cursor of the page that follows `after` under `sort` (the sort is part of it,
/// so a cursor cannot be replayed under another sort).
pub fn encode_cursor(sort: i32, after: &After) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!([sort, after.key, after.ad_id]).to_string())
}

/// The position a cursor names, if it is one this service made for `sort`.
pub fn decode_cursor(sort: i32, cursor: &str) -> Option<After> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (s, key, ad_id): (i32, f64, String) = serde_json::from_slice(&bytes).ok()?;
    (s == sort && key.is_finite() && (1..=64).contains(&ad_id.len()))
        .then_some(After { key, ad_id })
}

fn slug(field: &str, raw: &str) -> Result<Option<String>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    let ok = raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(Some(raw.to_owned()))
    } else {
        Err(invalid(format!(
            "{field} must be up to 64 characters of a-z, 0-9 and -"
        )))
    }
}

#[tonic::async_trait]
impl SearchService for SearchApi {
    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchPage>, Status> {
        let r = request.into_inner();
        if r.q.chars().count() > TEXT_CHARS_MAX || r.q.chars().any(char::is_control) {
            return Err(invalid(format!(
                "q must be at most {TEXT_CHARS_MAX} printable characters"
            )));
        }
        let sort = match SearchSort::try_from(r.sort) {
            Ok(SearchSort::Relevance) => Sort::Relevance,
            Ok(SearchSort::Newest) => Sort::Newest,
            Ok(SearchSort::PriceAsc) => Sort::PriceAsc,
            Ok(SearchSort::PriceDesc) => Sort::PriceDesc,
            Err(_) => return Err(invalid("unknown sort")),
        };
        let limit = match r.limit {
            0 => DEFAULT_LIMIT,
            n if n <= LIMIT_MAX => n,
            _ => return Err(invalid(format!("limit must be 1..={LIMIT_MAX}"))),
        };
        if r.price_min < 0 || r.price_max < 0 || (r.price_max > 0 && r.price_min > r.price_max) {
            return Err(invalid(
                "price_min and price_max must be >= 0, and min <= max",
            ));
        }
        let after = if r.cursor.is_empty() {
            None
        } else {
            Some(
                decode_cursor(r.sort, &r.cursor)
                    .ok_or_else(|| invalid("cursor is not one this search gave"))?,
            )
        };
        // Only ACTIVE ads are found (the mutant finds hidden, banned and deleted ones too).
        let statuses = if self.mutants.search_shows_inactive {
            ad::store::STATUSES
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            vec!["ACTIVE".to_owned()]
        };
        let search = Search {
            text: r.q.trim().to_owned(),
            category: slug("category", &r.category)?,
            region: slug("region", &r.region)?,
            price_min: (r.price_min > 0).then_some(r.price_min),
            price_max: (r.price_max > 0).then_some(r.price_max),
            statuses,
            sort,
            after,
            limit,
        };
        let hits = match self
            .store
            .query(SearchQuery::Search(search))
            .await
            .map_err(|e| store_status(SERVICE, e))?
        {
            SearchAnswer::Page(hits) => hits,
            other => {
                return Err(Status::internal(format!(
                    "{SERVICE}: search answered {other:?}"
                )))
            }
        };
        let next_cursor = if hits.len() == limit as usize {
            hits.last()
                .map(|h| {
                    encode_cursor(
                        r.sort,
                        &After {
                            key: h.key,
                            ad_id: h.doc.ad_id.clone(),
                        },
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let hits = hits
            .into_iter()
            .map(|h| SearchHit {
                ad_id: h.doc.ad_id,
                owner_id: h.doc.owner_id,
                title: h.doc.title,
                description: h.doc.description,
                price_minor: h.doc.price_minor,
                currency: h.doc.currency,
                category: h.doc.category,
                region: h.doc.region,
                version: h.doc.version,
                created_ms: h.doc.created_ms,
            })
            .collect();
        Ok(Response::new(SearchPage { hits, next_cursor }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let after = After {
            key: 1.5,
            ad_id: "ad-1".into(),
        };
        let c = encode_cursor(2, &after);
        assert_eq!(decode_cursor(2, &c), Some(after));
        assert_eq!(decode_cursor(1, &c), None, "another sort");
        assert_eq!(decode_cursor(2, "not-base64!"), None);
        assert_eq!(decode_cursor(2, &URL_SAFE_NO_PAD.encode("[2, 1.0]")), None);
    }
}
