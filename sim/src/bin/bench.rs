//! `ci/bench` — simulation throughput of the whole-fleet swarm scenario (every service, every
//! instance, random crashes and cuts), against the fault-free happy path as the baseline
//! measured in the same command. Per scenario: simulated seconds per wall second per core,
//! seeds per hour per core, and network messages per simulated second (the simulator's event
//! rate); then the swarm's figures as ratios of the baseline's, and the goal.

#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(madsim)]
mod cli {
    use clap::Parser;
    use sim::{runner, scenario};

    /// Simulation throughput: the swarm against the fault-free baseline.
    #[derive(Parser, Debug)]
    #[command(name = "ci/bench")]
    struct Args {
        /// Seeds per scenario.
        #[arg(default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// Seeds run at once (default: every core).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: Option<u64>,
    }

    /// Goals of the swarm, per core.
    const SPEED_GOAL: f64 = 700.0;
    const SEEDS_PER_HOUR_GOAL: f64 = 3_600.0;

    struct Figures {
        speed: f64,
        seeds_per_hour: f64,
        messages_per_s: f64,
    }

    fn measure(name: &str, seeds: u64, jobs: usize) -> Figures {
        let s = scenario::by_name(name).unwrap_or_else(|| panic!("no scenario {name}"));
        let r = runner::report(&s, None, 1..1 + seeds, jobs, |_| {});
        let core_s = r.wall_s.max(1e-9) * jobs as f64;
        let f = Figures {
            speed: r.simulated_s / core_s,
            seeds_per_hour: seeds as f64 * 3600.0 / core_s,
            messages_per_s: r.messages as f64 / r.simulated_s.max(1e-9),
        };
        println!(
            "{name:<11} {seeds} seeds on {jobs} core(s), {} orders, {} failing: {:.0}x real time per core, {:.0} seeds/hour/core, {:.0} messages per simulated s",
            r.orders,
            r.failing.len(),
            f.speed,
            f.seeds_per_hour,
            f.messages_per_s
        );
        f
    }

    pub fn main() {
        let args = Args::parse();
        let jobs = runner::jobs(args.jobs);
        let base = measure("happy-path", args.seeds, jobs);
        let swarm = measure("swarm", args.seeds, jobs);
        println!(
            "swarm / happy-path: {:.2}x speed, {:.2}x seeds per hour, {:.2}x messages per simulated s",
            swarm.speed / base.speed,
            swarm.seeds_per_hour / base.seeds_per_hour,
            swarm.messages_per_s / base.messages_per_s
        );
        let verdict = |ok: bool| if ok { "met" } else { "not met" };
        println!(
            "goal (swarm, per core): {SPEED_GOAL:.0}x real time: {}; {SEEDS_PER_HOUR_GOAL:.0} seeds/hour: {}",
            verdict(swarm.speed >= SPEED_GOAL),
            verdict(swarm.seeds_per_hour >= SEEDS_PER_HOUR_GOAL)
        );
    }
}

#[cfg(madsim)]
fn main() {
    cli::main()
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the benchmark needs `--cfg madsim`: run it as `ci/bench`");
    std::process::exit(2);
}
