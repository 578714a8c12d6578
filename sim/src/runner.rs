//! Runs scenarios over seeds: one madsim runtime per seed, a replay command for each failure.

use std::time::{Duration, Instant};

use platform::Mutants;

use crate::{scenario::Scenario, world};

/// The result of one seed.
#[derive(Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub outcome: world::Outcome,
    /// Wall time the seed took.
    pub wall: Duration,
}

/// Runs `scenario` with `mutants` under `seed`, on a fresh thread: std seeds each thread's
/// `HashMap` keys once, on first use, so a thread that already ran a seed would run the next
/// one with other keys, and the same seed would not replay the same way.
pub fn run_seed(scenario: &Scenario, mutants: Mutants, seed: u64) -> SeedRun {
    run_seed_with(scenario, mutants, seed, false)
}

/// [`run_seed`], keeping the run's history when `record` is set (see [`world::run`]).
pub fn run_seed_with(scenario: &Scenario, mutants: Mutants, seed: u64, record: bool) -> SeedRun {
    let s = scenario.clone();
    let run = std::thread::spawn(move || {
        if std::env::var_os("RUST_LOG").is_some() {
            madsim::runtime::init_logger();
        }
        let wall = Instant::now();
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let outcome = rt.block_on(async move { world::run(&s, mutants, record).await });
        SeedRun {
            seed,
            outcome,
            wall: wall.elapsed(),
        }
    });
    match run.join() {
        Ok(r) => r,
        Err(panic) => {
            eprintln!(
                "seed {seed} panicked; replay: {}",
                replay_command(&scenario.name, None, seed)
            );
            std::panic::resume_unwind(panic)
        }
    }
}

/// The command that replays one seed.
pub fn replay_command(scenario: &str, mutant: Option<&str>, seed: u64) -> String {
    replay_command_of(&format!("--scenario {scenario}"), mutant, seed)
}

/// The command that replays `seed` of the scenarios `selector` picks (`--scenario NAME` or
/// `--scenario-file PATH`).
pub fn replay_command_of(selector: &str, mutant: Option<&str>, seed: u64) -> String {
    match mutant {
        Some(m) => format!("ci/simulate {selector} --mutant {m} --seed {seed}"),
        None => format!("ci/simulate {selector} --seed {seed}"),
    }
}

/// Runs `seeds` of `scenario` on up to `jobs` seeds at once (each on its own thread and
/// runtime, so each seed's run is exactly what it is alone) and returns every run in seed
/// order; `on_seed` sees each as it ends, in the order they end.
pub fn sweep_parallel(
    scenario: &Scenario,
    mutants: Mutants,
    seeds: impl IntoIterator<Item = u64>,
    jobs: usize,
    mut on_seed: impl FnMut(&SeedRun),
) -> Vec<SeedRun> {
    let queue = std::sync::Mutex::new(seeds.into_iter().collect::<Vec<u64>>().into_iter());
    let (tx, rx) = std::sync::mpsc::channel::<SeedRun>();
    let mut runs = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let (queue, tx) = (&queue, tx.clone());
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(seed) = next else { return };
                if tx.send(run_seed(scenario, mutants, seed)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for r in rx {
            on_seed(&r);
            runs.push(r);
        }
    });
    runs.sort_by_key(|r| r.seed);
    runs
}

/// Runs `seeds` of `scenario` one after another and returns every run; `on_seed` sees each
/// as it ends.
pub fn sweep(
    scenario: &Scenario,
    mutants: Mutants,
    seeds: impl IntoIterator<Item = u64>,
    mut on_seed: impl FnMut(&SeedRun),
) -> Vec<SeedRun> {
    seeds
        .into_iter()
        .map(|seed| {
            let r = run_seed(scenario, mutants, seed);
            on_seed(&r);
            r
        })
        .collect()
}

/// Seeds to run at once: `asked`, or every core.
pub fn jobs(asked: Option<u64>) -> usize {
    asked.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |j| j as usize,
    )
}

/// The result of one scenario (with or without a mutant) over a range of seeds.
#[derive(Debug)]
pub struct Report {
    pub scenario: String,
    pub mutant: Option<String>,
    pub first_seed: u64,
    pub seeds: u64,
    /// Failing seeds, ascending, with their violations.
    pub failing: Vec<(u64, Vec<crate::checkers::Violation>)>,
    pub orders: usize,
    pub delivered: usize,
    pub cancelled: usize,
    /// Simulated seconds, summed over the seeds.
    pub simulated_s: f64,
    /// Messages the simulated network carried, summed over the seeds.
    pub messages: u64,
    /// Wall time of the whole sweep.
    pub wall_s: f64,
    /// Seeds run at once.
    pub jobs: usize,
}

impl Report {
    /// Whether the outcome is the expected one: no failing seed, or, with a mutant, at least
    /// one (the mutant is caught).
    pub fn ok(&self) -> bool {
        self.mutant.is_some() != self.failing.is_empty()
    }

    /// `pass`, `fail`, `caught` or `not-caught`.
    pub fn verdict(&self) -> &'static str {
        match (self.mutant.is_some(), self.failing.is_empty()) {
            (false, true) => "pass",
            (false, false) => "fail",
            (true, false) => "caught",
            (true, true) => "not-caught",
        }
    }

    /// Adds the seeds of `other`, a further sweep of the same scenario and mutant.
    pub fn merge(&mut self, other: Report) {
        self.seeds += other.seeds;
        self.failing.extend(other.failing);
        self.orders += other.orders;
        self.delivered += other.delivered;
        self.cancelled += other.cancelled;
        self.simulated_s += other.simulated_s;
        self.messages += other.messages;
        self.wall_s += other.wall_s;
    }

    /// The scenario's name, with `+mutant` when there is one.
    pub fn label(&self) -> String {
        match &self.mutant {
            Some(m) => format!("{} +{m}", self.scenario),
            None => self.scenario.clone(),
        }
    }

    /// The verdict in words, with the figures: one line.
    pub fn line(&self) -> String {
        let verdict = match self.verdict() {
            "pass" => "PASS".to_owned(),
            "fail" => format!("FAIL on {} of {} seeds", self.failing.len(), self.seeds),
            "caught" => format!(
                "CAUGHT {} on {} of {} seeds",
                self.mutant.as_deref().unwrap_or_default(),
                self.failing.len(),
                self.seeds
            ),
            _ => format!("NOT CAUGHT {}", self.mutant.as_deref().unwrap_or_default()),
        };
        let wall = self.wall_s.max(1e-9);
        format!(
            "{}: {verdict}: {} orders ({} delivered, {} cancelled); {:.0} simulated s in {:.1} wall s ({:.0}x), {:.2} seeds/s",
            self.label(),
            self.orders,
            self.delivered,
            self.cancelled,
            self.simulated_s,
            self.wall_s,
            self.simulated_s / wall,
            self.seeds as f64 / wall
        )
    }
}

/// Runs `seeds` of `scenario` with the mutant named `mutant` (none: unmutated), `jobs` at a
/// time, and sums the result up; `on_seed` sees each seed as it ends.
pub fn report(
    scenario: &Scenario,
    mutant: Option<&str>,
    seeds: std::ops::Range<u64>,
    jobs: usize,
    mut on_seed: impl FnMut(&SeedRun),
) -> Report {
    let mutants = mutant.and_then(Mutants::named).unwrap_or_default();
    let started = Instant::now();
    let (first_seed, count) = (seeds.start, seeds.end.saturating_sub(seeds.start));
    let runs = sweep_parallel(scenario, mutants, seeds, jobs, |r| on_seed(r));
    let mut report = Report {
        scenario: scenario.name.clone(),
        mutant: mutant.map(str::to_owned),
        first_seed,
        seeds: count,
        failing: Vec::new(),
        orders: 0,
        delivered: 0,
        cancelled: 0,
        simulated_s: 0.0,
        messages: 0,
        wall_s: 0.0,
        jobs: jobs.max(1),
    };
    for r in runs {
        report.orders += r.outcome.orders;
        report.delivered += r.outcome.delivered;
        report.cancelled += r.outcome.cancelled;
        report.simulated_s += r.outcome.simulated.as_secs_f64();
        report.messages += r.outcome.messages;
        if !r.outcome.violations.is_empty() {
            report.failing.push((r.seed, r.outcome.violations));
        }
    }
    report.wall_s = started.elapsed().as_secs_f64();
    report
}
