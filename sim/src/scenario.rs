//! Fault scenarios as data (`fault-scenarios/*.toml`), embedded so the simulation runs with
//! nothing but Rust installed.

use std::{collections::BTreeMap, time::Duration};

use platform::ports::{Acks, ProducerConfig};
use serde::{Deserialize, Serialize};

use crate::{checkers, kafka::KafkaModelConfig, topology};

/// One scenario file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Reads as a sentence, e.g. `service-crash-mid-saga`.
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
    /// Every database reply waits this long (a slow link back from the database).
    #[serde(default)]
    pub db_reply_latency_ms: u64,
    /// Messages the Redis model drops on their way to a subscriber, per mille.
    #[serde(default)]
    pub redis_lose_per_mille: u32,
    /// A random mix of faults drawn from the seed, on top of `faults`.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<Swarm>,
    /// Overrides of the Kafka model's settings (`sim::kafka::KafkaModelConfig`).
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// Settings of the services' Kafka producers.
    #[serde(default)]
    pub client: ClientSettings,
    /// Overrides of the node table's placement (`sim/src/topology.rs`).
    #[serde(default)]
    pub topology: TopologySettings,
    /// Overrides of the order service's admission limits.
    #[serde(default)]
    pub admission: AdmissionSettings,
    /// The checkers to run after the heal phase (names from `checkers::names`); every
    /// checker when absent.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkers: Option<Vec<String>>,
    /// The expected outcome besides passing: mutants this scenario must catch (each a
    /// failing run within the seeds `tests/sim/mutants.rs` tries).
    #[serde(default)]
    pub catches: Vec<String>,
}

/// Kafka settings a scenario may override; absent fields keep the seed's values. Mutants
/// apply on top.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unclean_leader_election: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_lag_time_max_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_session_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cache_writeback_interval_ms: Option<u64>,
    /// One-way delay of Kafka traffic between MSK and NSK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_region_latency_ms: Option<u64>,
}

impl KafkaSettings {
    /// `config` with these overrides.
    pub fn apply(&self, mut config: KafkaModelConfig) -> KafkaModelConfig {
        if let Some(v) = self.min_insync_replicas {
            config.min_insync_replicas = v;
        }
        if let Some(v) = self.unclean_leader_election {
            config.unclean_leader_election = v;
        }
        if let Some(v) = self.replica_lag_time_max_ms {
            config.replica_lag_time_max_ms = v;
        }
        if let Some(v) = self.broker_session_timeout_ms {
            config.broker_session_timeout_ms = v;
        }
        if let Some(v) = self.page_cache_writeback_interval_ms {
            config.page_cache_writeback_interval_ms = v;
        }
        if let Some(v) = self.cross_region_latency_ms {
            config.cross_region_latency_ms = v;
        }
        config
    }
}

/// The services' producer settings, and their consumers' `max.poll.interval.ms`; absent
/// fields keep `ProducerConfig::default()` and librdkafka's defaults.
/// Mutants apply on top.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// `"all"`, `"1"` or `"0"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_idempotence: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Consumers' `max.poll.interval.ms` (default librdkafka's 300 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_poll_interval_ms: Option<u64>,
}

impl ClientSettings {
    /// `config` with these overrides.
    pub fn apply(&self, mut config: ProducerConfig) -> ProducerConfig {
        if let Some(acks) = self.acks.as_deref().and_then(parse_acks) {
            config.acks = acks;
        }
        if let Some(v) = self.enable_idempotence {
            config.enable_idempotence = v;
        }
        if let Some(ms) = self.delivery_timeout_ms {
            config.delivery_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.request_timeout_ms {
            config.request_timeout = Duration::from_millis(ms);
        }
        config
    }
}

fn parse_acks(text: &str) -> Option<Acks> {
    match text {
        "all" | "-1" => Some(Acks::All),
        "1" => Some(Acks::Leader),
        "0" => Some(Acks::None),
        _ => None,
    }
}

/// Where the services sit, as far as a scenario may change it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySettings {
    /// `client.rack` of a service's Kafka clients (`order`, `payment`, `delivery`,
    /// `analytics` → `msk` / `nsk`); by default the rack of the service's region. A consumer
    /// in rack nsk reads from nsk-1 (follower fetching).
    #[serde(default)]
    pub client_racks: BTreeMap<String, String>,
}

/// The services whose Kafka clients `TopologySettings::client_racks` may place.
pub const SERVICES_WITH_KAFKA_CLIENTS: [&str; 4] = ["order", "payment", "delivery", "analytics"];

/// The orders the client places through the gateway.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    pub orders: u32,
    /// Gap between two orders, simulated milliseconds.
    pub gap_ms: u64,
    /// Whether the client retries an order until acknowledged (with its idempotency key).
    /// Without, it tries once, and an order refused with 429/503 must not exist.
    pub retry: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            orders: 30,
            gap_ms: 500,
            retry: true,
        }
    }
}

/// Overrides of the order service's admission limits (`order::Limits`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sagas_in_flight_max: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_backlog_max: Option<usize>,
}

impl AdmissionSettings {
    /// `limits` with these overrides.
    pub fn apply(&self, mut limits: order::Limits) -> order::Limits {
        if let Some(v) = self.sagas_in_flight_max {
            limits.sagas_in_flight_max = v;
        }
        if let Some(v) = self.outbox_backlog_max {
            limits.outbox_backlog_max = v;
        }
        limits
    }
}

/// Behaviour of the fake PSP and courier.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Providers {
    pub psp_decline_per_mille: u32,
    pub psp_timeout_per_mille: u32,
    pub courier_fail_per_mille: u32,
    pub courier_stage_ms: u64,
    /// How many times the PSP posts each charge's outcome to payment's webhook.
    pub psp_callback_copies: u32,
    /// How late a late PSP answer comes (`psp_timeout_per_mille` of them).
    pub psp_late_answer_ms: u64,
    /// How long after a charge the PSP posts its webhook.
    pub psp_callback_delay_ms: u64,
    /// Whether the moderation workers call the external provider (the fake `moderator`)
    /// instead of deciding by the rules themselves.
    pub moderation_provider: bool,
    /// Provider calls answered 503, per mille.
    pub moderator_fail_per_mille: u32,
    /// Provider answers 5 s late, per mille.
    pub moderator_late_per_mille: u32,
    /// Delay of every other provider answer.
    pub moderator_latency_ms: u64,
    /// The workers' bound on one provider call.
    pub moderator_call_timeout_ms: u64,
    /// Messages the messaging provider answers 503 (nothing sent), per mille.
    pub messenger_fail_per_mille: u32,
    /// Messages it sends but answers 5 s late (past the worker's 2 s bound), per mille.
    pub messenger_late_per_mille: u32,
}

impl Default for Providers {
    fn default() -> Self {
        Providers {
            psp_decline_per_mille: 100,
            psp_timeout_per_mille: 50,
            courier_fail_per_mille: 100,
            courier_stage_ms: 2_000,
            psp_callback_copies: 2,
            psp_late_answer_ms: 10_000,
            psp_callback_delay_ms: 300,
            moderation_provider: false,
            moderator_fail_per_mille: 50,
            moderator_late_per_mille: 20,
            moderator_latency_ms: 30,
            moderator_call_timeout_ms: 2_000,
            messenger_fail_per_mille: 50,
            messenger_late_per_mille: 20,
        }
    }
}

/// One timed fault. `at_ms` counts from the start of the fault phase; a range
/// `[from, to]` draws the time from the seed.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Fault {
    pub at_ms: [u64; 2],
    #[serde(flatten)]
    pub action: Action,
}

/// A randomized fault profile (in the manner of TigerBeetle's VOPR "swarm" testing): each
/// episode starts at a random time in the fault phase, lasts `episode_ms`, and is one of
/// the `kinds` — kill then restart one of `nodes`, cut the regions apart, or cut one
/// direction — ending with its repair.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Swarm {
    pub episodes: u32,
    /// Bounds of one episode's length.
    pub episode_ms: [u64; 2],
    /// Nodes a crash episode may pick.
    pub nodes: Vec<String>,
    /// Any of `crash`, `partition`, `one-way`.
    pub kinds: Vec<String>,
}

impl Swarm {
    /// The episodes `draw` picks, as timed actions within `fault_phase`.
    pub fn draw(&self, fault_phase: Duration, draw: &mut Draw) -> Vec<(u64, Action)> {
        let phase_ms = fault_phase.as_millis() as u64;
        let mut out = Vec::new();
        for _ in 0..self.episodes {
            let [lo, hi] = self.episode_ms;
            let length = lo + draw.below(hi.saturating_sub(lo) + 1);
            let start = draw.below(phase_ms.saturating_sub(length).max(1));
            let end = start + length;
            let kind = self.kinds.get(draw.index(self.kinds.len()));
            match kind.map(String::as_str) {
                Some("crash") if !self.nodes.is_empty() => {
                    let node = self.nodes[draw.index(self.nodes.len())].clone();
                    out.push((start, Action::Kill { node: node.clone() }));
                    out.push((end, Action::Restart { node }));
                }
                Some("partition") => {
                    out.push((start, Action::PartitionRegions));
                    out.push((end, Action::HealNetwork));
                }
                Some("one-way") => {
                    let from = if draw.below(2) == 0 { "msk" } else { "nsk" };
                    out.push((start, Action::PartitionOneWay { from: from.into() }));
                    out.push((end, Action::HealNetwork));
                }
                _ => {}
            }
        }
        out
    }
}

/// The random numbers a seed's fault schedule is drawn from (SplitMix64), apart from the
/// runtime's: the schedule is a pure function of the scenario and the seed, known before the
/// run, and a run given that schedule as fixed faults ([`Scenario::pinned`]) draws the same
/// numbers from the runtime as the original, so it replays it exactly.
pub struct Draw(u64);

impl Draw {
    /// The numbers of `seed`.
    pub fn new(seed: u64) -> Self {
        Draw(seed ^ 0x5eed_fa17_5c4e_d01e)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let x = self.next();
        if n == 0 {
            0
        } else {
            x % n
        }
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len.max(1) as u64) as usize
    }
}

impl Scenario {
    /// The faults `seed` applies, in time order (ms from the start of the fault phase): the
    /// fixed faults at their drawn times, then the swarm's episodes.
    pub fn schedule(&self, seed: u64) -> Vec<(u64, Action)> {
        let mut draw = Draw::new(seed);
        let mut out: Vec<(u64, Action)> = self
            .faults
            .iter()
            .map(|f| {
                let [lo, hi] = f.at_ms;
                (lo + draw.below(hi - lo + 1), f.action.clone())
            })
            .collect();
        if let Some(swarm) = &self.swarm {
            out.extend(swarm.draw(Duration::from_secs(self.fault_phase_s), &mut draw));
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }

    /// This scenario with `schedule` as its only faults, at fixed times and without a swarm:
    /// under the same seed it runs as the original did with that schedule.
    pub fn pinned(&self, schedule: &[(u64, Action)]) -> Scenario {
        Scenario {
            swarm: None,
            faults: schedule
                .iter()
                .map(|(t, action)| Fault {
                    at_ms: [*t, *t],
                    action: action.clone(),
                })
                .collect(),
            ..self.clone()
        }
    }

    /// The scenario as a scenario file.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string(self)?)
    }
}

/// What a fault does.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Kill a node's process (its tasks die; its disk and page cache stay).
    Kill { node: String },
    /// The node's host loses power: killed as by `kill`, and a broker also loses what its
    /// host had not written back from the page cache (see `KafkaCluster::power_off`). A
    /// database node loses nothing more: it fsyncs every commit.
    PowerOff { node: String },
    /// Restart a killed node (its init runs again).
    Restart { node: String },
    /// Cut a node (or every instance of a service) off the network, both ways; it keeps
    /// running. `heal-network` ends it.
    Isolate { node: String },
    /// Cut MSK from NSK in both directions.
    PartitionRegions,
    /// Cut traffic from region `from` to the other one only.
    PartitionOneWay { from: String },
    /// Every reply of database node `node` waits `latency_ms` more (a slow link back from
    /// it; a slow database, as its clients see it), until `heal-network`.
    Slow { node: String, latency_ms: u64 },
    /// Remove every network fault (slow links included).
    HealNetwork,
}

/// What a swarm episode can be.
pub const SWARM_KINDS: [&str; 3] = ["crash", "partition", "one-way"];

/// Every node a fault may name: the Kafka model's nodes and the world's (`topology.rs`),
/// and every service's name (all its instances).
fn node_names() -> Vec<String> {
    let kafka = KafkaModelConfig::seed_default();
    kafka
        .brokers
        .iter()
        .map(|b| b.name.clone())
        .chain([kafka.controller_name.clone()])
        .chain(topology::fault_targets().into_iter().map(|n| n.name))
        .chain(topology::SERVICES.iter().map(|s| s.name.to_owned()))
        .collect()
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
    "service-crash-mid-saga",
    "msk-nsk-partition",
    "nsk-one-way-partition",
    "msk-broker-loss",
    "broker-loss-during-partition",
    "database-crash",
    "psp-timeouts",
    "psp-timeouts-and-duplicate-callbacks",
    "analytics-crash",
    "rolling-broker-restart",
    "unclean-election-bait",
    "lone-leader-power-loss",
    "instance-crash-takeover",
    "rolling-instance-restart",
    "delivery-cut-past-deadline",
    "courier-down-past-deadline",
    "slow-courier",
    "psp-answers-after-deadline",
    "order-database-slow",
    "order-burst",
    "moderation-workers-crash",
    "moderation-provider-outage",
    "moderation-slow-workers",
    "notification-fanout-faults",
    "notification-slow-database",
    "notification-provider-faults",
    "swarm",
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
    let known = node_names();
    let named = s.faults.iter().filter_map(|f| match &f.action {
        Action::Kill { node }
        | Action::PowerOff { node }
        | Action::Restart { node }
        | Action::Isolate { node } => Some(node),
        _ => None,
    });
    for node in named.chain(s.swarm.iter().flat_map(|w| &w.nodes)) {
        anyhow::ensure!(
            known.contains(node),
            "scenario {}: unknown node {node:?} (known: {})",
            s.name,
            known.join(", ")
        );
    }
    let databases: Vec<String> = topology::database_nodes()
        .into_iter()
        .map(|n| n.name)
        .collect();
    for f in &s.faults {
        if let Action::Slow { node, .. } = &f.action {
            anyhow::ensure!(
                databases.contains(node),
                "scenario {}: slow names a database node, not {node:?} (known: {})",
                s.name,
                databases.join(", ")
            );
        }
        if let Action::PartitionOneWay { from } = &f.action {
            anyhow::ensure!(
                from == "msk" || from == "nsk",
                "scenario {}: partition-one-way from must be \"msk\" or \"nsk\", not {from:?}",
                s.name
            );
        }
    }
    for kind in s.swarm.iter().flat_map(|w| &w.kinds) {
        anyhow::ensure!(
            SWARM_KINDS.contains(&kind.as_str()),
            "scenario {}: unknown swarm kind {kind:?} (known: {})",
            s.name,
            SWARM_KINDS.join(", ")
        );
    }
    if let Some(acks) = &s.client.acks {
        anyhow::ensure!(
            parse_acks(acks).is_some(),
            "scenario {}: acks must be \"all\", \"1\" or \"0\", not {acks:?}",
            s.name
        );
    }
    for (service, rack) in &s.topology.client_racks {
        anyhow::ensure!(
            SERVICES_WITH_KAFKA_CLIENTS.contains(&service.as_str()),
            "scenario {}: client_racks names unknown service {service:?} (known: {})",
            s.name,
            SERVICES_WITH_KAFKA_CLIENTS.join(", ")
        );
        anyhow::ensure!(
            rack == "msk" || rack == "nsk",
            "scenario {}: rack of {service} must be \"msk\" or \"nsk\", not {rack:?}",
            s.name
        );
    }
    for c in s.checkers.iter().flatten() {
        anyhow::ensure!(
            checkers::names().contains(&c.as_str()),
            "scenario {}: unknown checker {c:?} (known: {})",
            s.name,
            checkers::names().join(", ")
        );
    }
    anyhow::ensure!(
        s.admission.sagas_in_flight_max != Some(0) && s.admission.outbox_backlog_max != Some(0),
        "scenario {}: admission limits must be positive",
        s.name
    );
    anyhow::ensure!(
        s.kafka
            .min_insync_replicas
            .is_none_or(|n| (1..=3).contains(&n)),
        "scenario {}: min_insync_replicas must be 1 to 3 (replication factor 3)",
        s.name
    );
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

/// The scenarios in `path`: a scenario file, or every `*.toml` in a folder (by file name), so
/// a user runs their own without rebuilding. A file with a mistake is refused with its path
/// and the reason.
pub fn from_path(path: &std::path::Path) -> anyhow::Result<Vec<Scenario>> {
    use anyhow::Context;
    let files = if path.is_dir() {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading folder {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        anyhow::ensure!(
            !files.is_empty(),
            "folder {} holds no scenario (*.toml)",
            path.display()
        );
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            parse(&text).with_context(|| format!("scenario file {}", f.display()))
        })
        .collect()
}
