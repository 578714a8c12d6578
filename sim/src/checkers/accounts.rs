//! Accounts and ownership: no two accounts share an email (compared case-insensitively, as
//! people type them), every order belongs to a registered account, and no user was ever
//! shown another user's order.

use std::collections::BTreeMap;

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "accounts";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_email: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (id, email) in &state.users {
        by_email
            .entry(email.trim().to_lowercase())
            .or_default()
            .push(id);
    }
    for (email, ids) in by_email.iter().filter(|(_, ids)| ids.len() > 1) {
        out.push(Violation {
            checker: NAME,
            detail: format!("{} accounts share the email {email}: {ids:?}", ids.len()),
        });
    }
    for (id, o) in &state.orders {
        if !state.users.contains_key(&o.customer_id) {
            out.push(Violation {
                checker: NAME,
                detail: format!(
                    "order {id} belongs to {:?}, who has no account",
                    o.customer_id
                ),
            });
        }
    }
    for (order, reader, owner) in &state.foreign_reads {
        out.push(Violation {
            checker: NAME,
            detail: format!("user {reader} was shown order {order} of user {owner}"),
        });
    }
    out
}
