//! Search converges: after heal, a search for an ad's title in its category and region finds
//! it if and only if it is ACTIVE (hidden, banned and deleted ads are never found).

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "search";

pub fn check(state: &FinalState) -> Vec<Violation> {
    state
        .search_lookups
        .iter()
        .filter_map(|(id, status, found)| {
            let detail = match (status.as_str(), found) {
                (_, None) => format!("ad {id}: the search for it failed after heal"),
                ("ACTIVE", Some(false)) => format!("ad {id} is ACTIVE but search does not find it"),
                (s, Some(true)) if s != "ACTIVE" => format!("ad {id} is {s} but search finds it"),
                _ => return None,
            };
            Some(Violation {
                checker: NAME,
                detail,
            })
        })
        .collect()
}
