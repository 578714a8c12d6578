//! Analytics mart: the consumer's effect happened exactly once per committed status change
//! (no lost record, no double count), and the revenue is that of the paid orders.

use std::collections::BTreeMap;

use super::{history, FinalState, Violation};

pub(crate) const NAME: &str = "analytics-mart";

/// The mart's `status:<STATUS>` counters.
pub fn status_counts(mart: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    mart.iter()
        .filter_map(|(k, v)| k.strip_prefix("status:").map(|s| (s.to_owned(), *v)))
        .collect()
}

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
    for o in state.orders.values() {
        let h = history(o);
        for s in &h {
            *want.entry(s.clone()).or_default() += 1;
        }
        if h.iter().any(|s| s == "PAID") {
            *revenue.entry(o.currency.clone()).or_default() += o.amount_minor;
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
            .get(&format!("revenue:{currency}"))
            .copied()
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
