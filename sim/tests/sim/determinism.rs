use std::sync::Mutex;

use platform::Mutants;
use sim::{runner, scenario, world};

/// The scenario `replay` runs; `check_determinism` takes a plain `fn`, so it is passed here.
static SCENARIO: Mutex<Option<scenario::Scenario>> = Mutex::new(None);

fn replay() -> impl std::future::Future<Output = Vec<String>> {
    let s = SCENARIO
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .expect("scenario set");
    async move { world::run(&s, Mutants::default(), false).await.trace }
}

#[test]
fn the_same_seed_draws_the_same_random_numbers_in_the_same_order() {
    // madsim logs every random draw of the first run and panics at the first draw of the
    // second run that differs: a stronger check than comparing outcomes.
    *SCENARIO.lock().expect("lock") = scenario::by_name("service-crash-mid-saga");
    let trace = madsim::runtime::Runtime::check_determinism(7, madsim::Config::default(), replay);
    assert!(!trace.is_empty());
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for name in ["service-crash-mid-saga", "broker-loss-during-partition"] {
        let s = scenario::by_name(name).expect("scenario");
        let a = runner::run_seed(&s, Mutants::default(), 7);
        let b = runner::run_seed(&s, Mutants::default(), 7);
        assert!(!a.outcome.trace.is_empty());
        assert_eq!(
            a.outcome.trace, b.outcome.trace,
            "{name}: seed 7 is not deterministic"
        );
        assert_eq!(a.outcome.simulated, b.outcome.simulated);
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let s = scenario::by_name("service-crash-mid-saga").expect("scenario");
    let a = runner::run_seed(&s, Mutants::default(), 1);
    let b = runner::run_seed(&s, Mutants::default(), 2);
    assert_ne!(
        a.outcome.trace, b.outcome.trace,
        "the seed does not reach the run"
    );
}

#[test]
fn seeds_run_in_parallel_give_the_runs_they_give_alone() {
    let s = scenario::parse(
        "name = \"short\"\ndescription = \"\"\nfault_phase_s = 6\nheal_phase_s_max = 60\n\
         [workload]\norders = 6\ngap_ms = 500\n",
    )
    .expect("scenario");
    let alone = runner::sweep(&s, Mutants::default(), 1..=4, |_| {});
    let mut seen = Vec::new();
    let parallel = runner::sweep_parallel(&s, Mutants::default(), 1..=4, 3, |r| seen.push(r.seed));
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4], "on_seed sees every seed once");
    assert_eq!(
        parallel.iter().map(|r| r.seed).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "runs come back in seed order"
    );
    for (a, b) in alone.iter().zip(&parallel) {
        assert!(!a.outcome.trace.is_empty());
        assert_eq!(
            a.outcome.trace, b.outcome.trace,
            "seed {} differs when run beside others",
            a.seed
        );
    }
}

#[test]
fn a_seeds_schedule_pinned_as_fixed_faults_replays_the_same_run() {
    // The schedule is drawn apart from the runtime's random numbers, so the scenario file an
    // artifact folder holds (`schedule.toml`) replays the seed exactly.
    let s = scenario::by_name("swarm").expect("scenario");
    for seed in [3, 4] {
        let schedule = s.schedule(seed);
        assert!(!schedule.is_empty(), "the swarm draws faults");
        let pinned = scenario::parse(&s.pinned(&schedule).to_toml().expect("toml"))
            .expect("the pinned schedule is a valid scenario file");
        assert!(pinned.swarm.is_none());
        assert_eq!(pinned.schedule(seed + 100), schedule, "fixed times");
        let a = runner::run_seed(&s, Mutants::default(), seed);
        let b = runner::run_seed(&pinned, Mutants::default(), seed);
        assert_eq!(a.outcome.trace, b.outcome.trace, "seed {seed}");
    }
}

#[test]
fn recording_a_run_does_not_change_it() {
    let s = scenario::by_name("service-crash-mid-saga").expect("scenario");
    let plain = runner::run_seed(&s, Mutants::default(), 5);
    let recorded = runner::run_seed_with(&s, Mutants::default(), 5, true);
    assert_eq!(plain.outcome.trace, recorded.outcome.trace);
    assert!(plain.outcome.history.is_none());
    let history = recorded.outcome.history.expect("history");
    assert!(history.commits.iter().any(|c| c.db == "orders-db"));
    assert!(!history.faults.is_empty());
}
