use platform::Mutants;
use sim::{runner, scenario};

/// Seeds every scenario passes in `cargo test` (the nightly sweep takes many more).
pub const SEEDS: std::ops::RangeInclusive<u64> = 1..=4;

/// Runs `name` over [`SEEDS`] and fails with the replay command of every failing seed.
pub fn scenario_passes(name: &str) {
    let s = scenario::by_name(name).unwrap_or_else(|| panic!("no scenario {name}"));
    let wall = std::time::Instant::now();
    let runs = runner::sweep(&s, Mutants::default(), SEEDS, |_| {});
    let simulated: f64 = runs.iter().map(|r| r.outcome.simulated.as_secs_f64()).sum();
    let orders: usize = runs.iter().map(|r| r.outcome.orders).sum();
    println!(
        "{name}: {} seeds, {orders} orders, {simulated:.0} simulated s in {:.1} wall s",
        runs.len(),
        wall.elapsed().as_secs_f64()
    );
    assert!(orders > 0, "{name}: the workload placed no order");
    let failures: Vec<String> = runs
        .iter()
        .filter(|r| !r.outcome.violations.is_empty())
        .map(|r| {
            format!(
                "seed {}: {}\n  replay: {}",
                r.seed,
                r.outcome
                    .violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  "),
                runner::replay_command(name, None, r.seed)
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{name} failed:\n{}",
        failures.join("\n")
    );
}

/// Waits until `cond` holds, checking every 20 ms of simulated time; fails the test after
/// `limit`.
pub async fn eventually(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let end = madsim::time::Instant::now() + limit;
    while !cond() {
        assert!(
            madsim::time::Instant::now() < end,
            "waited {limit:?} and still not: {what}"
        );
        madsim::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
