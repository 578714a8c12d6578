//! The search service's typed store: one document per ad, the newest version it has seen.
//! SQL: `migrations/search/` (PostgreSQL full-text search); Postgres twin:
//! `adapters::postgres::schemas::search`.
//!
//! **Where the model and PostgreSQL differ, deliberately.** PostgreSQL matches words by their
//! stems (`websearch_to_tsquery` in the `russian` and `english` configurations: "bikes" finds
//! "bike", "велосипеды" finds "велосипед") and ranks by `ts_rank`. The model matches whole
//! lower-cased words and ranks by how many query words the title holds. Neither changes a
//! checker's verdict: the simulation's searches use words that are their own stems, and its
//! checkers look at which ads are found, not their rank order. The differential test holds
//! both to the same results over such words, and compares relevance-sorted pages as sets.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError};
use serde::{Deserialize, Serialize};

/// Bound on a page.
pub const LIMIT_MAX: u32 = 100;

/// An ad as the index holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    pub ad_id: String,
    pub version: i64,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub category: String,
    pub region: String,
    pub status: String,
    pub created_ms: i64,
}

/// Orders of a result page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sort {
    /// Best match first (by the text; without text, newest first).
    Relevance,
    Newest,
    PriceAsc,
    PriceDesc,
}

/// Where the previous page ended: the last hit's sort key and id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct After {
    /// The sort key: rank (relevance), created_ms (newest) or price_minor (price sorts).
    pub key: f64,
    pub ad_id: String,
}

/// A search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Search {
    /// Words (websearch syntax in PostgreSQL); empty matches every document.
    pub text: String,
    pub category: Option<String>,
    pub region: Option<String>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    /// The statuses that may be found (the service asks for ACTIVE only).
    pub statuses: Vec<String>,
    pub sort: Sort,
    pub after: Option<After>,
    pub limit: u32,
}

/// One result: the document and its sort key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub doc: Doc,
    pub key: f64,
}

/// A write of the search store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchWrite {
    /// The document, unless the index holds the same or a newer version of it (events may be
    /// delivered again, so an older version must not overwrite a newer one).
    Upsert(Doc),
}

/// A read of the search store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SearchQuery {
    Search(Search),
    Doc {
        ad_id: String,
    },
    /// Every document's id and version (checkers and tests).
    Versions,
}

/// An answer of the search store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SearchAnswer {
    Page(Vec<Hit>),
    Doc(Option<Doc>),
    Versions(Vec<(String, i64)>),
}

/// The index in memory.
pub type SearchModel = BTreeMap<String, Doc>;

/// The search store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchSchema;

/// The lower-cased words of `text`.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn check(d: &Doc) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&d.ad_id.chars().count()) && d.version > 0;
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "document {} breaks the ad_index table's constraints",
            d.ad_id
        )))
    }
}

/// The model's sort key of `d` for `s` (see the module doc for relevance).
fn key(d: &Doc, s: &Search, terms: &[String]) -> f64 {
    match s.sort {
        Sort::Relevance if !terms.is_empty() => {
            let title = words(&d.title);
            terms.iter().filter(|t| title.contains(t)).count() as f64
        }
        Sort::Relevance | Sort::Newest => d.created_ms as f64,
        Sort::PriceAsc | Sort::PriceDesc => d.price_minor as f64,
    }
}

impl Schema for SearchSchema {
    type Write = SearchWrite;
    type Query = SearchQuery;
    type Answer = SearchAnswer;
    type Model = SearchModel;

    fn apply(m: &mut SearchModel, write: SearchWrite) -> Result<(), StoreError> {
        let SearchWrite::Upsert(doc) = write;
        check(&doc)?;
        if m.get(&doc.ad_id).is_none_or(|d| d.version < doc.version) {
            m.insert(doc.ad_id.clone(), doc);
        }
        Ok(())
    }

    fn query(m: &SearchModel, query: &SearchQuery) -> SearchAnswer {
        let s = match query {
            SearchQuery::Doc { ad_id } => return SearchAnswer::Doc(m.get(ad_id).cloned()),
            SearchQuery::Versions => {
                return SearchAnswer::Versions(
                    m.values().map(|d| (d.ad_id.clone(), d.version)).collect(),
                )
            }
            SearchQuery::Search(s) => s,
        };
        let terms = words(&s.text);
        let mut hits: Vec<Hit> = m
            .values()
            .filter(|d| s.statuses.contains(&d.status))
            .filter(|d| s.category.as_ref().is_none_or(|c| *c == d.category))
            .filter(|d| s.region.as_ref().is_none_or(|r| *r == d.region))
            .filter(|d| s.price_min.is_none_or(|p| d.price_minor >= p))
            .filter(|d| s.price_max.is_none_or(|p| d.price_minor <= p))
            .filter(|d| {
                let mut text = words(&d.title);
                text.extend(words(&d.description));
                terms.iter().all(|t| text.contains(t))
            })
            .map(|d| Hit {
                key: key(d, s, &terms),
                doc: d.clone(),
            })
            .collect();
        // Descending key for relevance and newest and price_desc, ascending for price_asc;
        // ad id breaks ties in the same direction.
        let descending = !matches!(s.sort, Sort::PriceAsc);
        hits.sort_by(|a, b| {
            let ord = a
                .key
                .total_cmp(&b.key)
                .then_with(|| a.doc.ad_id.cmp(&b.doc.ad_id));
            if descending {
                ord.reverse()
            } else {
                ord
            }
        });
        if let Some(after) = &s.after {
            hits.retain(|h| {
                let ord = h
                    .key
                    .total_cmp(&after.key)
                    .then_with(|| h.doc.ad_id.cmp(&after.ad_id));
                if descending {
                    ord.is_lt()
                } else {
                    ord.is_gt()
                }
            });
        }
        hits.truncate(s.limit.min(LIMIT_MAX) as usize);
        SearchAnswer::Page(hits)
    }
}
