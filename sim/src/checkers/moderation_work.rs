//! Moderation, the point-to-point queue: every report the gateway accepted exists and is
//! decided; every task was decided exactly once in effect (one decision in the moderation
//! store, one distinct result on `moderation.results`); the report shows that result's
//! decision; the results on one target come in the order of its tasks; and after heal every
//! BAN is in effect (the ad BANNED — or DELETED by its owner —, the account blocked) and
//! nothing is banned or blocked without one.

use std::collections::{BTreeMap, BTreeSet};

use ::moderation::{ModerationResult, ModerationTask};

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "moderation";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |detail: String| Violation {
        checker: NAME,
        detail,
    };
    for id in &state.acknowledged_reports {
        match state.reports.get(id) {
            None => out.push(v(format!("report {id} was accepted but does not exist"))),
            Some(r) if r.status != "DECIDED" => {
                out.push(v(format!("report {id} is still {} after heal", r.status)))
            }
            Some(_) => {}
        }
    }
    // Distinct results per task, in log order per partition (a record repeated with its
    // event id is one result).
    let mut seen = BTreeSet::new();
    let mut results: BTreeMap<String, Vec<ModerationResult>> = BTreeMap::new();
    let mut result_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in state.result_events.iter().flatten() {
        match serde_json::from_slice::<ModerationResult>(&r.payload) {
            Ok(e) if !seen.insert(e.event_id.clone()) => {}
            Ok(e) => {
                result_order
                    .entry(e.target_id.clone())
                    .or_default()
                    .push(e.task_id.clone());
                results.entry(e.task_id.clone()).or_default().push(e);
            }
            Err(e) => out.push(v(format!("a moderation result does not decode: {e}"))),
        }
    }
    let mut task_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tasks = BTreeSet::new();
    for r in state.task_events.iter().flatten() {
        if let Ok(t) = serde_json::from_slice::<ModerationTask>(&r.payload) {
            if tasks.insert(t.task_id.clone()) {
                task_order
                    .entry(t.target_id.clone())
                    .or_default()
                    .push(t.task_id);
            }
        }
    }
    let mut decisions: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &state.decisions {
        *decisions.entry(d.task_id.as_str()).or_default() += 1;
    }
    for (id, report) in &state.reports {
        let published = results.get(id).map(Vec::as_slice).unwrap_or_default();
        let decided = decisions.get(id.as_str()).copied().unwrap_or(0);
        if decided > 1 || published.len() > 1 {
            out.push(v(format!(
                "task {id} was decided {decided} time(s) and published {} time(s)",
                published.len()
            )));
            let kinds: BTreeSet<&str> = published.iter().map(|r| r.decision.as_str()).collect();
            if kinds.len() > 1 {
                out.push(v(format!("task {id} got different decisions: {kinds:?}")));
            }
        }
        if report.status == "DECIDED" {
            match published.first() {
                None => out.push(v(format!(
                    "report {id} is DECIDED but moderation.results holds no decision on it"
                ))),
                Some(r) if r.decision != report.decision => out.push(v(format!(
                    "report {id} shows {} but moderation decided {}",
                    report.decision, r.decision
                ))),
                Some(_) => {}
            }
        }
    }
    // Bans in effect, and only bans.
    let banned: BTreeSet<(&str, &str)> = results
        .values()
        .flatten()
        .filter(|r| r.decision == "BAN")
        .map(|r| (r.target_kind.as_str(), r.target_id.as_str()))
        .collect();
    for (kind, id) in &banned {
        let in_effect = match *kind {
            "AD" => state
                .ads
                .get(*id)
                .is_none_or(|(_, ad)| matches!(ad.status.as_str(), "BANNED" | "DELETED")),
            _ => state.blocked_users.contains(*id),
        };
        if !in_effect {
            out.push(v(format!(
                "{kind} {id} was banned but the ban is not in effect"
            )));
        }
    }
    for (id, (_, ad)) in &state.ads {
        if ad.status == "BANNED" && !banned.contains(&("AD", id.as_str())) {
            out.push(v(format!("ad {id} is BANNED without a BAN decision")));
        }
    }
    for id in &state.blocked_users {
        if !banned.contains(&("USER", id.as_str())) {
            out.push(v(format!("account {id} is blocked without a BAN decision")));
        }
    }
    // On one target, results come in the order of its tasks.
    for (target, order) in &result_order {
        let expected: Vec<&String> = task_order
            .get(target)
            .map(|t| t.iter().filter(|id| order.contains(id)).collect())
            .unwrap_or_default();
        let got: Vec<&String> = {
            let mut firsts = Vec::new();
            for id in order {
                if !firsts.contains(&id) {
                    firsts.push(id);
                }
            }
            firsts
        };
        if got != expected {
            out.push(v(format!(
                "results on target {target} came in the order {got:?}, its tasks in {expected:?}"
            )));
        }
    }
    out
}
