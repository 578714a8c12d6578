//! Analytics mart: the consumer's effect happened exactly once per committed status change
//! (no lost record, no double count), and the revenue is that of the paid orders.

use std::collections::BTreeMap;

use platform::store::MemoryState;

use super::{history, FinalState, Violation};

pub(crate) const NAME: &str = "analytics-mart";

/// The mart's `status:<STATUS>` counters.
pub fn status_counts(analytics: &MemoryState) -> BTreeMap<String, i64> {
    analytics
        .all(analytics::MART)
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("status:")
                .map(|s| (s.to_owned(), v.body.as_i64().unwrap_or(0)))
        })
        .collect()
}

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
    for (_, v) in state.orders.all("orders") {
        let h = history(&v.body);
        for s in &h {
            *want.entry(s.clone()).or_default() += 1;
        }
        if h.iter().any(|s| s == "PAID") {
            let currency = v
                .body
                .get("currency")
                .and_then(|c| c.as_str())
                .unwrap_or("?")
                .to_owned();
            *revenue.entry(currency).or_default() += v
                .body
                .get("amount_minor")
                .and_then(|a| a.as_i64())
                .unwrap_or(0);
        }
    }
    let got = status_counts(&state.analytics);
    let mut out = Vec::new();
    for status in want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (w, g) = (
            want.get(status).copied().unwrap_or(0),
            got.get(status).copied().unwrap_or(0),
        );
        if w != g {
            let kind = if g > w {
                "counted twice"
            } else {
                "never counted"
            };
            out.push(Violation {
                checker: NAME,
                detail: format!(
                    "{status}: mart says {g}, orders went through it {w} times ({} {kind})",
                    (g - w).abs()
                ),
            });
        }
    }
    for (currency, w) in &revenue {
        let g = state
            .analytics
            .get(analytics::MART, &format!("revenue:{currency}"))
            .and_then(|v| v.body.as_i64())
            .unwrap_or(0);
        if g != *w {
            out.push(Violation {
                checker: NAME,
                detail: format!("revenue {currency}: mart says {g}, paid orders sum to {w}"),
            });
        }
    }
    out
}
