//! Live notifications, without gaps: each recipient's feed numbers its updates 1, 2, 3, …;
//! each order's statuses are in its buyer's feed once each, in the order's own order; each
//! decided report's decision is in its reporter's feed once; and
//! after heal the updates the buyer's sessions received — across every session, on whichever
//! instance — are exactly the feed: every seq, each in one session only, in order within a
//! session, with the feed's content, and no reset (the simulation never trims a feed).
//!
//! And live means live: in quiet time (no fault on, after a grace for instances to
//! subscribe to hints), an update reaches every session of its recipient that was open when
//! it was committed within [`LIVE_DELAY_MAX_MS`] — a wake-up and a read, not the next
//! position check.

use std::collections::{BTreeMap, BTreeSet};

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "notifications";

/// How late an update may reach a session open when it was committed, in a healed world.
pub const LIVE_DELAY_MAX_MS: u64 = 1_000;
/// Updates committed this soon after startup or heal are not timed: instances and Redis come
/// (back) up and subscribe first.
pub const HEAL_GRACE_MS: u64 = 10_000;

/// Updates committed in quiet time ([`FinalState::quiet_from_ms`]) that reached a session
/// open at their commit later than [`LIVE_DELAY_MAX_MS`], or not at all while it stayed
/// open.
fn late(state: &FinalState, out: &mut Vec<Violation>) {
    let mut arrived: BTreeMap<(&str, u32, i64), u64> = BTreeMap::new();
    for r in &state.received {
        let seq =
            r.id.rsplit_once(':')
                .and_then(|(_, s)| s.parse::<i64>().ok());
        if let Some(seq) = seq {
            arrived
                .entry((r.user_id.as_str(), r.session, seq))
                .or_insert(r.at_ms);
        }
    }
    let Some(quiet_from) = state.quiet_from_ms else {
        return;
    };
    let mut reported = 0;
    for (recipient, (_, updates)) in &state.feeds {
        for u in updates {
            let Ok(committed) = u64::try_from(u.created_ms) else {
                continue;
            };
            if committed < quiet_from {
                continue;
            }
            let deadline = committed + LIVE_DELAY_MAX_MS;
            let open = state.live_sessions.iter().filter(|s| {
                &s.user_id == recipient
                    && s.opened_ms <= committed
                    && s.closed_ms.is_none_or(|c| c >= deadline)
            });
            for s in open {
                let at = arrived.get(&(recipient.as_str(), s.session, u.seq));
                if at.is_none_or(|at| *at > deadline) {
                    reported += 1;
                    if reported <= 5 {
                        out.push(violation(format!(
                            "late: {recipient}'s seq {} (committed at {committed} ms) reached \
                             session {} {}, more than {LIVE_DELAY_MAX_MS} ms later",
                            u.seq,
                            s.session,
                            at.map_or("never while it was open".to_owned(), |at| format!(
                                "at {at} ms"
                            ))
                        )));
                    }
                }
            }
        }
    }
}

/// What the feeds hold, by subject, in seq order.
#[derive(Default)]
struct Fed {
    /// Order id → the statuses its buyer's feed holds.
    statuses: BTreeMap<String, Vec<String>>,
    /// Report id → the decisions its reporter's feed holds.
    decisions: BTreeMap<String, Vec<String>>,
}

fn fed(state: &FinalState, out: &mut Vec<Violation>) -> Fed {
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut decisions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (recipient, (_, updates)) in &state.feeds {
        for (i, u) in updates.iter().enumerate() {
            if u.seq != i as i64 + 1 {
                out.push(violation(format!(
                    "{recipient}'s feed has seq {} at position {}: numbers must run 1, 2, 3, …",
                    u.seq,
                    i + 1
                )));
            }
            if u.kind == "moderation.result" {
                let decision = serde_json::from_str::<serde_json::Value>(&u.body)
                    .ok()
                    .and_then(|b| b["decision"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".into());
                match state.reports.get(&u.subject) {
                    Some(r) if &r.reporter_id != recipient => out.push(violation(format!(
                        "report {}'s decision went to {recipient}, not its reporter {}",
                        u.subject, r.reporter_id
                    ))),
                    _ => {}
                }
                decisions
                    .entry(u.subject.clone())
                    .or_default()
                    .push(decision);
                continue;
            }
            if u.kind != "order.status" {
                continue;
            }
            let status = serde_json::from_str::<serde_json::Value>(&u.body)
                .ok()
                .and_then(|b| b["status"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into());
            match state.orders.get(&u.subject) {
                Some(o) if &o.customer_id != recipient => out.push(violation(format!(
                    "order {}'s update went to {recipient}, not its buyer {}",
                    u.subject, o.customer_id
                ))),
                _ => {}
            }
            per_order.entry(u.subject.clone()).or_default().push(status);
        }
    }
    Fed {
        statuses: per_order,
        decisions,
    }
}

fn violation(detail: String) -> Violation {
    Violation {
        checker: NAME,
        detail,
    }
}

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let fed = fed(state, &mut out);
    let per_order = &fed.statuses;
    for (id, r) in &state.reports {
        let got = fed.decisions.get(id).cloned().unwrap_or_default();
        let want: Vec<String> = if r.status == "DECIDED" {
            vec![r.decision.clone()]
        } else {
            vec![]
        };
        if got != want {
            out.push(violation(format!(
                "report {id}'s decisions in its reporter's feed are {got:?}; it is {} {:?}",
                r.status, r.decision
            )));
        }
    }
    for (id, o) in &state.orders {
        let history: Vec<&str> = o.history.iter().map(|s| s.as_str()).collect();
        let fed: Vec<&str> = per_order
            .get(id)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if fed != history {
            out.push(violation(format!(
                "order {id}'s statuses in its buyer's feed are {fed:?}; its history is {history:?}"
            )));
        }
    }

    // What each recipient's sessions received: (session, seq, data).
    let mut received: BTreeMap<&str, Vec<(u32, i64, &str, &str)>> = BTreeMap::new();
    for r in &state.received {
        match r.event.as_str() {
            "position" => continue,
            "reset" => {
                out.push(violation(format!(
                    "{}'s session {} on {} was reset ({}), yet no feed is ever trimmed",
                    r.user_id, r.session, r.instance, r.data
                )));
                continue;
            }
            _ => {}
        }
        let Some((epoch, seq)) =
            r.id.rsplit_once(':')
                .and_then(|(e, s)| Some((e, s.parse::<i64>().ok()?)))
        else {
            out.push(violation(format!(
                "{}'s session {} got an update without an epoch:seq id: {:?}",
                r.user_id, r.session, r.id
            )));
            continue;
        };
        received.entry(r.user_id.as_str()).or_default().push((
            r.session,
            seq,
            epoch,
            r.data.as_str(),
        ));
    }
    for (recipient, (epoch, updates)) in &state.feeds {
        let got = received.remove(recipient.as_str()).unwrap_or_default();
        let mut last_in_session: BTreeMap<u32, i64> = BTreeMap::new();
        let mut sessions_of: BTreeMap<i64, BTreeSet<u32>> = BTreeMap::new();
        for (session, seq, e, data) in &got {
            if e != epoch {
                out.push(violation(format!(
                    "{recipient}'s session {session} got seq {seq} of epoch {e}; the feed's is {epoch}"
                )));
                continue;
            }
            if let Some(prev) = last_in_session.insert(*session, *seq) {
                if *seq <= prev {
                    out.push(violation(format!(
                        "{recipient}'s session {session} got seq {seq} after seq {prev}"
                    )));
                }
            }
            sessions_of.entry(*seq).or_default().insert(*session);
            let Some(u) = usize::try_from(*seq - 1).ok().and_then(|i| updates.get(i)) else {
                out.push(violation(format!(
                    "{recipient} got seq {seq}, which the feed does not hold"
                )));
                continue;
            };
            let sent: Option<serde_json::Value> = serde_json::from_str(data).ok();
            let logged: Option<serde_json::Value> =
                serde_json::from_str(&notification::http::update_json(u)).ok();
            if sent.is_none() || sent != logged {
                out.push(violation(format!(
                    "{recipient}'s seq {seq} arrived as {data}, the feed holds {}",
                    u.body
                )));
            }
        }
        let missing: Vec<i64> = updates
            .iter()
            .map(|u| u.seq)
            .filter(|s| !sessions_of.contains_key(s))
            .collect();
        if !missing.is_empty() {
            out.push(violation(format!(
                "{recipient}'s sessions never got seq(s) {missing:?} of {} in the feed",
                updates.len()
            )));
        }
        let twice: Vec<(i64, usize)> = sessions_of
            .iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(seq, s)| (*seq, s.len()))
            .collect();
        if !twice.is_empty() {
            out.push(violation(format!(
                "duplicates: {recipient} got seq(s) in more than one session (seq, sessions): {twice:?}"
            )));
        }
    }
    for (recipient, got) in received {
        out.push(violation(format!(
            "{recipient} got {} update(s) but has no feed",
            got.len()
        )));
    }
    late(state, &mut out);
    out
}
