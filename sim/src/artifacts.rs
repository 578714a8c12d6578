//! What a failing seed leaves behind: a folder that explains the failure.
//!
//! For one failing `(scenario, mutant, seed)` [`write`] runs the seed again with its history
//! recorded and writes:
//! - `README.txt` — the violations, the replay commands, and what shrinking kept;
//! - `schedule.toml` — the fault schedule the seed drew, as a scenario file with fixed times
//!   (`ci/simulate --scenario-file …/schedule.toml --seed S` replays the same run: the
//!   schedule is drawn apart from the runtime's random numbers, see [`crate::scenario::Draw`]);
//! - `shrunk.toml` — the smallest schedule found by delta debugging (ddmin) over the
//!   schedule's episodes (a crash with its restart, a cut with its heal) under the same seed,
//!   for which the same checker still fails;
//! - `timeline.html` — nodes as lanes, faults as bars, and the violating order's status
//!   changes, payment and shipment records and outbox events marked on it (the first order
//!   a violation names).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context;
use platform::Mutants;

use crate::{
    kafka::KafkaModelConfig,
    runner,
    scenario::{Action, Scenario},
    timeline::{FaultBar, Mark, MarkKind, Timeline},
    topology,
    world::History,
};

/// Bound on the runs shrinking may spend on one failure.
pub const SHRINK_RUNS_MAX: usize = 64;

/// What [`write`] produced.
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    /// The checker whose failure was kept while shrinking.
    pub checker: String,
    /// Whether the pinned schedule (`schedule.toml`) fails the same way under the seed.
    pub reproduced: bool,
    /// Faults in the seed's schedule, and in the shrunk one.
    pub faults: usize,
    pub shrunk: Vec<(u64, Action)>,
    /// Runs spent shrinking.
    pub shrink_runs: usize,
}

/// Writes the artifact folder of `seed` of `scenario` (with `mutant`) under `root`, named
/// `<scenario>[+<mutant>]-seed-<seed>`. `selector` is how the user picked the scenario
/// (`--scenario NAME` or `--scenario-file PATH`), for the replay command.
pub fn write(
    root: &Path,
    scenario: &Scenario,
    selector: &str,
    mutant: Option<&str>,
    seed: u64,
) -> anyhow::Result<Written> {
    let mutants = match mutant {
        Some(m) => Mutants::named(m).with_context(|| format!("unknown mutant {m:?}"))?,
        None => Mutants::default(),
    };
    let run = runner::run_seed_with(scenario, mutants, seed, true);
    let first = run
        .outcome
        .violations
        .first()
        .with_context(|| format!("seed {seed} of {} passed when run again", scenario.name))?;
    let checker = first.checker;
    let fails = |s: &Scenario| {
        runner::run_seed(s, mutants, seed)
            .outcome
            .violations
            .iter()
            .any(|v| v.checker == checker)
    };

    let schedule = scenario.schedule(seed);
    let pinned = scenario.pinned(&schedule);
    let reproduced = fails(&pinned);
    let (shrunk, shrink_runs) = if reproduced {
        let (units, runs) = ddmin(episodes(&schedule), SHRINK_RUNS_MAX, |units| {
            fails(&scenario.pinned(&flatten(units)))
        });
        (flatten(&units), runs)
    } else {
        (schedule.clone(), 0)
    };

    let name = match mutant {
        Some(m) => format!("{}+{m}-seed-{seed}", scenario.name),
        None => format!("{}-seed-{seed}", scenario.name),
    };
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mutant_arg = mutant.map(|m| format!(" --mutant {m}")).unwrap_or_default();
    let replay = runner::replay_command_of(selector, mutant, seed);
    let file_replay = |file: &str| {
        format!(
            "ci/simulate --scenario-file {}{mutant_arg} --seed {seed}",
            dir.join(file).display()
        )
    };

    let as_file = |faults: &[(u64, Action)], what: &str| -> anyhow::Result<String> {
        let mut s = scenario.pinned(faults);
        s.name = format!("{}-{what}", name);
        s.description = format!(
            "{what} of seed {seed} of {}{}: {} fault(s) at fixed times. Replay with --seed {seed}{mutant_arg}.",
            scenario.name,
            mutant.map(|m| format!(" with mutant {m}")).unwrap_or_default(),
            faults.len()
        );
        s.to_toml()
    };
    write_file(&dir, "schedule.toml", &as_file(&schedule, "schedule")?)?;
    write_file(&dir, "shrunk.toml", &as_file(&shrunk, "shrunk")?)?;

    let mut readme = format!(
        "{name}: {} violation(s); shrinking kept checker [{checker}]\n\nreplay:            {replay}\nreplay schedule:   {}\nreplay shrunk:     {}\n\n",
        run.outcome.violations.len(),
        file_replay("schedule.toml"),
        file_replay("shrunk.toml"),
    );
    if !reproduced {
        readme.push_str("The pinned schedule did not fail the same way, so it was not shrunk.\n\n");
    }
    readme.push_str(&format!(
        "faults: {} drawn, {} after shrinking ({shrink_runs} runs)\n",
        schedule.len(),
        shrunk.len()
    ));
    for (t, a) in &shrunk {
        readme.push_str(&format!("  {t:>6} ms  {}\n", describe(a)));
    }
    readme.push_str("\nviolations:\n");
    for v in &run.outcome.violations {
        readme.push_str(&format!("  {v}\n"));
    }
    write_file(&dir, "README.txt", &readme)?;

    if let Some(history) = &run.outcome.history {
        let mut notes = vec![
            format!("replay: {replay}"),
            format!("replay the shrunk schedule: {}", file_replay("shrunk.toml")),
        ];
        notes.extend(
            run.outcome
                .violations
                .iter()
                .take(10)
                .map(|v| v.to_string()),
        );
        let t = timeline(
            &format!(
                "{}{}, seed {seed}",
                scenario.name,
                mutant.map(|m| format!(" +{m}")).unwrap_or_default()
            ),
            notes,
            history,
            run.outcome.simulated.as_millis() as u64,
            &run.outcome
                .violations
                .iter()
                .map(|v| v.detail.clone())
                .collect::<Vec<_>>(),
        );
        write_file(&dir, "timeline.html", &t.to_html())?;
    }
    Ok(Written {
        dir,
        checker: checker.to_owned(),
        reproduced,
        faults: schedule.len(),
        shrunk,
        shrink_runs,
    })
}

fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// A fault in words, e.g. `kill order-1`.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Kill { node } => format!("kill {node}"),
        Action::PowerOff { node } => format!("power-off {node}"),
        Action::Restart { node } => format!("restart {node}"),
        Action::Isolate { node } => format!("isolate {node}"),
        Action::PartitionRegions => "partition msk|nsk".into(),
        Action::PartitionOneWay { from } => format!("one-way cut from {from}"),
        Action::Slow { node, latency_ms } => format!("slow {node} (+{latency_ms} ms)"),
        Action::HealNetwork => "heal network".into(),
    }
}

/// The schedule as episodes, the units shrinking removes: a kill or power-off with the next
/// restart of that node, a cut with the next heal, anything else alone.
pub fn episodes(schedule: &[(u64, Action)]) -> Vec<Vec<(u64, Action)>> {
    let mut used = vec![false; schedule.len()];
    let mut out = Vec::new();
    for i in 0..schedule.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let (_, action) = &schedule[i];
        let closes = |other: &Action| match (action, other) {
            (Action::Kill { node } | Action::PowerOff { node }, Action::Restart { node: r }) => {
                node == r
            }
            (
                Action::PartitionRegions
                | Action::PartitionOneWay { .. }
                | Action::Isolate { .. }
                | Action::Slow { .. },
                Action::HealNetwork,
            ) => true,
            _ => false,
        };
        let mut unit = vec![schedule[i].clone()];
        if let Some(j) = (i + 1..schedule.len()).find(|&j| !used[j] && closes(&schedule[j].1)) {
            used[j] = true;
            unit.push(schedule[j].clone());
        }
        out.push(unit);
    }
    out
}

fn flatten(units: &[Vec<(u64, Action)>]) -> Vec<(u64, Action)> {
    let mut all: Vec<(u64, Action)> = units.iter().flatten().cloned().collect();
    all.sort_by_key(|(t, _)| *t);
    all
}

/// Delta debugging (Zeller's ddmin, complements first): a smallest-found subset of `items`
/// for which `fails` still holds, given that it holds for `items`; and the number of times
/// `fails` ran (at most `runs_max`).
pub fn ddmin<T: Clone>(
    mut items: Vec<T>,
    runs_max: usize,
    mut fails: impl FnMut(&[T]) -> bool,
) -> (Vec<T>, usize) {
    let mut runs = 0;
    let mut n = 2usize;
    while !items.is_empty() && runs < runs_max {
        let chunk = items.len().div_ceil(n);
        let mut reduced = false;
        // Try each chunk alone, then each complement.
        let chunks: Vec<(usize, usize)> = (0..items.len())
            .step_by(chunk)
            .map(|start| (start, (start + chunk).min(items.len())))
            .collect();
        for &(a, b) in &chunks {
            if runs >= runs_max {
                break;
            }
            let subset = items[a..b].to_vec();
            if subset.len() < items.len() {
                runs += 1;
                if fails(&subset) {
                    items = subset;
                    n = 2;
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced && chunks.len() > 1 {
            for &(a, b) in &chunks {
                if runs >= runs_max {
                    break;
                }
                let complement: Vec<T> = items[..a].iter().chain(&items[b..]).cloned().collect();
                runs += 1;
                if fails(&complement) {
                    items = complement;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= items.len() {
                // Every single item is needed: try the empty schedule last.
                if items.len() == 1 && runs < runs_max {
                    runs += 1;
                    if fails(&[]) {
                        items.clear();
                    }
                }
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    (items, runs)
}

/// The timeline of a recorded run, following the first order named in `details`.
fn timeline(
    title: &str,
    mut notes: Vec<String>,
    history: &History,
    end_ms: u64,
    details: &[String],
) -> Timeline {
    let kafka = KafkaModelConfig::seed_default();
    let mut by_ip: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut lanes = Vec::new();
    for n in topology::SERVICES
        .iter()
        .flat_map(topology::instances)
        .chain(topology::database_nodes())
        .chain([topology::client()])
    {
        by_ip.insert(n.ip(), n.name.clone());
        lanes.push(n.name);
    }
    lanes.extend(kafka.brokers.iter().map(|b| b.name.clone()));
    lanes.push(kafka.controller_name.clone());
    lanes.push("network".into());

    let mut faults = Vec::new();
    let mut open: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let close = |open: &mut BTreeMap<String, (u64, String)>,
                 faults: &mut Vec<FaultBar>,
                 lane: &str,
                 at: u64| {
        if let Some((from, label)) = open.remove(lane) {
            faults.push(FaultBar {
                lane: lane.to_owned(),
                from_ms: from,
                to_ms: Some(at),
                label,
            });
        }
    };
    let mut isolated: Vec<String> = Vec::new();
    for (at, action) in &history.faults {
        match action {
            Action::Kill { node } | Action::PowerOff { node } => {
                for lane in topology::expand(node) {
                    open.entry(lane).or_insert((*at, describe(action)));
                }
            }
            Action::Restart { node } => {
                for lane in topology::expand(node) {
                    close(&mut open, &mut faults, &lane, *at);
                }
            }
            Action::PartitionRegions | Action::PartitionOneWay { .. } => {
                close(&mut open, &mut faults, "network", *at);
                open.insert("network".into(), (*at, describe(action)));
            }
            Action::Isolate { node } | Action::Slow { node, .. } => {
                for lane in topology::expand(node) {
                    open.entry(lane.clone()).or_insert((*at, describe(action)));
                    isolated.push(lane);
                }
            }
            Action::HealNetwork => {
                close(&mut open, &mut faults, "network", *at);
                for lane in isolated.drain(..) {
                    close(&mut open, &mut faults, &lane, *at);
                }
            }
        }
    }
    // The heal at the end of the fault phase ends every fault still open.
    let lanes_open: Vec<String> = open.keys().cloned().collect();
    for lane in lanes_open {
        close(&mut open, &mut faults, &lane, history.fault_phase_ms);
    }

    // The violating order: the first one a violation names.
    let followed: Vec<&(String, String)> = details
        .iter()
        .find_map(|d| {
            history
                .orders
                .iter()
                .find(|(id, _)| d.contains(id.as_str()))
        })
        .into_iter()
        .collect();
    let mut marks = Vec::new();
    for (id, status) in &followed {
        notes.push(format!(
            "order {id}: ends {status}; published {}",
            history
                .published
                .get(id)
                .map(|s| s.join(" → "))
                .unwrap_or_else(|| "nothing".into())
        ));
        for c in &history.commits {
            let lane = by_ip
                .get(&c.from)
                .cloned()
                .unwrap_or_else(|| c.from.to_string());
            if c.writes.contains(id.as_str()) {
                let kind = match c.db.as_str() {
                    "orders-db" => MarkKind::Status,
                    "payments-db" | "deliveries-db" => MarkKind::Call,
                    _ => MarkKind::Note,
                };
                marks.push(Mark {
                    lane: lane.clone(),
                    at_ms: c.at_ms,
                    kind,
                    label: commit_label(&c.db, &c.writes),
                });
            }
            for (topic, _) in c.outbox.iter().filter(|(_, key)| key == id) {
                marks.push(Mark {
                    lane: lane.clone(),
                    at_ms: c.at_ms,
                    kind: MarkKind::Event,
                    label: format!("→ {topic}"),
                });
            }
        }
    }
    if followed.is_empty() {
        notes.push("no violation names an order: only the faults are drawn".into());
    }
    Timeline {
        title: title.to_owned(),
        notes,
        end_ms,
        fault_phase_ms: history.fault_phase_ms,
        lanes,
        faults,
        marks,
    }
}

/// `orders-db Update Paid`: the database, the first write's kind and the status it sets.
fn commit_label(db: &str, writes: &str) -> String {
    let kind: String = writes
        .trim_start_matches('[')
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect();
    let status = writes.find("status: ").map(|i| {
        writes[i + "status: ".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
    });
    match status {
        Some(s) => format!("{db} {kind} {s}"),
        None => format!("{db} {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_two_items_that_fail_together() {
        let items: Vec<u32> = (0..16).collect();
        let (kept, runs) = ddmin(items, 200, |s| s.contains(&3) && s.contains(&11));
        assert_eq!(kept, vec![3, 11]);
        assert!(runs < 60, "{runs} runs");
    }

    #[test]
    fn ddmin_stops_at_its_run_bound() {
        let items: Vec<u32> = (0..64).collect();
        let mut calls = 0;
        let (kept, runs) = ddmin(items, 5, |s| {
            calls += 1;
            s.len() > 10
        });
        assert_eq!((runs, calls), (5, 5));
        assert!(kept.len() > 10);
    }

    #[test]
    fn ddmin_empties_a_schedule_whose_failure_needs_no_fault() {
        let (kept, _) = ddmin(vec![1, 2, 3], 50, |_| true);
        assert!(kept.is_empty());
    }

    #[test]
    fn episodes_pair_a_crash_with_its_restart_and_a_cut_with_its_heal() {
        let kill = |n: &str| Action::Kill { node: n.into() };
        let restart = |n: &str| Action::Restart { node: n.into() };
        let schedule = vec![
            (10, kill("order-1")),
            (20, Action::PartitionRegions),
            (30, kill("msk-1")),
            (40, restart("order-1")),
            (50, Action::HealNetwork),
            (60, restart("msk-1")),
        ];
        let e = episodes(&schedule);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], vec![(10, kill("order-1")), (40, restart("order-1"))]);
        assert_eq!(
            e[1],
            vec![(20, Action::PartitionRegions), (50, Action::HealNetwork)]
        );
        assert_eq!(flatten(&e), schedule);
    }

    #[test]
    fn a_commit_is_labelled_with_its_kind_and_status() {
        let w = "[Update { order: Order { order_id: \"o-1\", status: Paid, reason: \"\" }, version: 3 }]";
        assert_eq!(commit_label("orders-db", w), "orders-db Update Paid");
        assert_eq!(commit_label("x-db", "[Put { k: 1 }]"), "x-db Put");
    }
}
