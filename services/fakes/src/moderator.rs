//! A fake external moderation provider: `POST /v1/moderate` `{task_id, target_kind, reason,
//! comment}` → `{decision: BAN|OK, reason}`, decided by `moderation::rule_decision`, so a
//! decision does not depend on who made it. Faults: latency,
//! failures (503, nothing decided) and late answers (past the caller's timeout). Every
//! decision it answered is kept by task, so checkers can tell a task it was asked about twice.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, routing::post, Json, Router};
use platform::{
    http::{ApiJson, Problem},
    Shutdown,
};
use serde::{Deserialize, Serialize};

/// Behaviour of the fake provider.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ModeratorConfig {
    /// Requests answered 503 (nothing decided), per mille.
    pub fail_per_mille: u32,
    /// Answers delayed by `late_ms`, per mille.
    pub late_per_mille: u32,
    /// Delay of a normal answer.
    pub latency_ms: u64,
    /// Delay of a late answer.
    pub late_ms: u64,
}

impl Default for ModeratorConfig {
    fn default() -> Self {
        ModeratorConfig {
            fail_per_mille: 50,
            late_per_mille: 20,
            latency_ms: 30,
            late_ms: 5_000,
        }
    }
}

/// What the provider is asked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModerateRequest {
    pub task_id: String,
    pub target_kind: String,
    pub reason: String,
    #[serde(default)]
    pub comment: String,
}

/// Its answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModerateAnswer {
    /// `BAN` or `OK`.
    pub decision: String,
    pub reason: String,
}

/// Answers given, by task id (in order).
pub type SharedVerdicts = Arc<Mutex<BTreeMap<String, Vec<ModerateAnswer>>>>;

#[derive(Clone)]
struct AppState {
    config: Arc<ModeratorConfig>,
    verdicts: SharedVerdicts,
}

/// The provider's HTTP routes.
pub fn router(config: ModeratorConfig, verdicts: SharedVerdicts) -> Router {
    Router::new()
        .route("/v1/moderate", post(moderate))
        .with_state(AppState {
            config: Arc::new(config),
            verdicts,
        })
}

/// Serves the fake provider on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ModeratorConfig,
    verdicts: SharedVerdicts,
    shutdown: Shutdown,
) {
    platform::http::serve(listener, router(config, verdicts), shutdown).await;
}

/// The provider's decision: the rules of `moderation::rule_decision`.
pub fn rules(reason: &str, comment: &str) -> ModerateAnswer {
    let (decision, reason) = moderation::rule_decision(reason, comment);
    ModerateAnswer { decision, reason }
}

async fn moderate(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ModerateRequest>,
) -> Result<Json<ModerateAnswer>, Problem> {
    if req.task_id.is_empty() || !matches!(req.target_kind.as_str(), "AD" | "USER") {
        return Err(Problem::unprocessable(
            "task_id and target_kind AD or USER are required",
        ));
    }
    tokio::time::sleep(Duration::from_millis(st.config.latency_ms)).await;
    if crate::per_mille() < st.config.fail_per_mille {
        return Err(Problem::unavailable("the provider is overloaded"));
    }
    let answer = rules(&req.reason, &req.comment);
    if let Ok(mut v) = st.verdicts.lock() {
        v.entry(req.task_id).or_default().push(answer.clone());
    }
    if crate::per_mille() < st.config.late_per_mille {
        tokio::time::sleep(Duration::from_millis(st.config.late_ms)).await;
    }
    Ok(Json(answer))
}
