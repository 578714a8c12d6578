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
    let s = scenario.clone();
    let run = std::thread::spawn(move || {
        if std::env::var_os("RUST_LOG").is_some() {
            madsim::runtime::init_logger();
        }
        let wall = Instant::now();
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let outcome = rt.block_on(async move { world::run(&s, mutants).await });
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
