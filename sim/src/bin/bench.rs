//! `ci/bench [SEEDS]` — simulation throughput of the whole-fleet swarm scenario, against the
//! fault-free happy path as the baseline measured in the same command: seeds per second,
//! simulated seconds per wall second, and the swarm's figures as ratios of the baseline's.

#[cfg(madsim)]
fn main() {
    use std::time::Instant;

    use platform::Mutants;
    use sim::{runner, scenario};

    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let measure = |name: &str| {
        let s = scenario::by_name(name).unwrap_or_else(|| panic!("no scenario {name}"));
        let wall = Instant::now();
        let runs = runner::sweep(&s, Mutants::default(), 1..=seeds, |_| {});
        let wall = wall.elapsed().as_secs_f64();
        let simulated: f64 = runs.iter().map(|r| r.outcome.simulated.as_secs_f64()).sum();
        let failing = runs
            .iter()
            .filter(|r| !r.outcome.violations.is_empty())
            .count();
        let orders: usize = runs.iter().map(|r| r.outcome.orders).sum();
        println!(
            "{name:<12} {seeds} seeds, {orders} orders, {failing} failing: {:.2} seeds/s, {:.1} simulated s per wall s, {:.0} orders/s",
            seeds as f64 / wall,
            simulated / wall,
            orders as f64 / wall
        );
        (seeds as f64 / wall, simulated / wall)
    };
    let (base_rate, base_speed) = measure("happy-path");
    let (swarm_rate, swarm_speed) = measure("swarm");
    println!(
        "swarm / happy-path: {:.2}x seeds per second, {:.2}x simulated-time speed-up",
        swarm_rate / base_rate,
        swarm_speed / base_speed
    );
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the benchmark needs `--cfg madsim`: run it as `ci/bench`");
    std::process::exit(2);
}
