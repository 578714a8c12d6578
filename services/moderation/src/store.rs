//! The moderation service's typed store: the decisions made. SQL: `migrations/moderation/`;
//! Postgres twin: `adapters::postgres::schemas::moderation`.
//!
//! Decisions are a log with an id of their own, not a table keyed by task: that a task is
//! decided once rests on the inbox (the decision commits with the task's inbox mark), which
//! is what the simulation's checkers hold to account.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError};
use serde::{Deserialize, Serialize};

/// The decisions a moderator makes.
pub const DECISIONS: [&str; 2] = ["BAN", "OK"];

/// One decision on one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub decision_id: String,
    pub task_id: String,
    pub target_kind: String,
    pub target_id: String,
    pub decision: String,
    pub reason: String,
    /// The worker instance that decided.
    pub worker: String,
    pub decided_ms: i64,
}

fn check(d: &Decision) -> Result<(), StoreError> {
    let chars = |s: &str| s.chars().count();
    let ok = (1..=64).contains(&chars(&d.decision_id))
        && (1..=64).contains(&chars(&d.task_id))
        && matches!(d.target_kind.as_str(), "AD" | "USER")
        && (1..=64).contains(&chars(&d.target_id))
        && DECISIONS.contains(&d.decision.as_str())
        && chars(&d.reason) <= 200
        && (1..=100).contains(&chars(&d.worker));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "decision {} breaks the decisions table's constraints",
            d.decision_id
        )))
    }
}

/// A write of the moderation store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModerationWrite {
    /// A decision; conflicts when its id is taken.
    Decide(Decision),
}

/// A read of the moderation store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModerationQuery {
    /// The decisions on `task_id`, oldest first.
    OfTask { task_id: String },
}

/// The moderation store's table in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationModel {
    pub decisions: BTreeMap<String, Decision>,
}

/// The moderation store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct ModerationSchema;

impl Schema for ModerationSchema {
    type Write = ModerationWrite;
    type Query = ModerationQuery;
    type Answer = Vec<Decision>;
    type Model = ModerationModel;

    fn apply(m: &mut ModerationModel, write: ModerationWrite) -> Result<(), StoreError> {
        match write {
            ModerationWrite::Decide(d) => {
                check(&d)?;
                if m.decisions.contains_key(&d.decision_id) {
                    return Err(StoreError::conflict("decisions", &d.decision_id));
                }
                m.decisions.insert(d.decision_id.clone(), d);
            }
        }
        Ok(())
    }

    fn query(m: &ModerationModel, query: &ModerationQuery) -> Vec<Decision> {
        match query {
            ModerationQuery::OfTask { task_id } => {
                let mut out: Vec<Decision> = m
                    .decisions
                    .values()
                    .filter(|d| &d.task_id == task_id)
                    .cloned()
                    .collect();
                out.sort_by(|a, b| {
                    (a.decided_ms, &a.decision_id).cmp(&(b.decided_ms, &b.decision_id))
                });
                out
            }
        }
    }
}
