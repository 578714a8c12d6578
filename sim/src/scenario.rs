//! Fault scenarios as data (`fault-scenarios/*.toml`), embedded so the simulation runs with
//! nothing but Rust installed.

use serde::Deserialize;

/// One scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Reads as a sentence, e.g. `order-service-crash-mid-saga`.
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub workload: Workload,
    /// Length of the fault phase (faults act inside it), simulated seconds.
    pub fault_phase_s: u64,
    /// Bound on the heal (liveness) phase: faults off, everything must finish.
    pub heal_phase_s_max: u64,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub providers: Providers,
    /// Lost replies from DB nodes after a commit, per mille.
    #[serde(default)]
    pub db_lose_reply_per_mille: u32,
    /// Mutants this scenario must catch (each a failing run within `mutant_seeds_max` seeds).
    #[serde(default)]
    pub catches: Vec<String>,
}

/// The orders the client places through the gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    pub orders: u32,
    /// Gap between two orders, simulated milliseconds.
    pub gap_ms: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            orders: 30,
            gap_ms: 500,
        }
    }
}

/// Behaviour of the fake PSP and courier.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Providers {
    pub psp_decline_per_mille: u32,
    pub psp_timeout_per_mille: u32,
    pub courier_fail_per_mille: u32,
    pub courier_stage_ms: u64,
    /// How many times the PSP posts each charge's outcome to payment's webhook.
    pub psp_callback_copies: u32,
}

impl Default for Providers {
    fn default() -> Self {
        Providers {
            psp_decline_per_mille: 100,
            psp_timeout_per_mille: 50,
            courier_fail_per_mille: 100,
            courier_stage_ms: 2_000,
            psp_callback_copies: 2,
        }
    }
}

/// One timed fault. `at_ms` counts from the start of the fault phase; a range
/// `[from, to]` draws the time from the seed.
#[derive(Clone, Debug, Deserialize)]
pub struct Fault {
    pub at_ms: [u64; 2],
    #[serde(flatten)]
    pub action: Action,
}

/// What a fault does.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Kill a node (its tasks die; its disk stays).
    Kill { node: String },
    /// Restart a killed node (its init runs again).
    Restart { node: String },
    /// Cut MSK from NSK in both directions.
    PartitionRegions,
    /// Cut traffic from region `from` to the other one only.
    PartitionOneWay { from: String },
    /// Remove every network fault.
    HealNetwork,
}

/// `(name, text)` of the scenario file `fault-scenarios/<name>.toml`, embedded.
macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../fault-scenarios/", $name, ".toml")))),*]
    };
}

/// The scenario files, embedded.
pub const EMBEDDED: &[(&str, &str)] = embed![
    "happy-path",
    "order-service-crash-mid-saga",
    "msk-nsk-partition",
    "nsk-one-way-partition",
    "msk-broker-loss",
    "broker-loss-during-partition",
    "database-crash",
    "psp-timeouts",
    "psp-duplicate-callbacks",
    "analytics-crash",
    "rolling-broker-restart",
    "unclean-election-bait",
];

/// Parses a scenario file.
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let s: Scenario = toml::from_str(text)?;
    for m in &s.catches {
        anyhow::ensure!(
            platform::Mutants::named(m).is_some(),
            "scenario {}: unknown mutant {m:?}",
            s.name
        );
    }
    for f in &s.faults {
        anyhow::ensure!(
            f.at_ms[0] <= f.at_ms[1],
            "scenario {}: at_ms range reversed",
            s.name
        );
    }
    Ok(s)
}

/// Every embedded scenario.
pub fn embedded() -> Vec<Scenario> {
    EMBEDDED
        .iter()
        .map(|(name, text)| {
            parse(text).unwrap_or_else(|e| panic!("embedded scenario {name} is invalid: {e}"))
        })
        .collect()
}

/// The embedded scenario called `name`.
pub fn by_name(name: &str) -> Option<Scenario> {
    embedded().into_iter().find(|s| s.name == name)
}
