//! `ci/bench` — simulation throughput of the whole-fleet swarm scenario (every service, every
//! instance, random crashes and cuts), against the fault-free happy path as the baseline
//! measured in the same command. Per scenario: simulated seconds per wall second per core,
//! seeds per hour per core, and network messages per simulated second (the simulator's event
//! rate); then the swarm's figures as ratios of the baseline's, and the goal. Last, the
//! transport's floor: what one message costs on madsim's network alone (a bare request/reply
//! between two nodes that do nothing else, in a loop), and so the fastest the swarm could run
//! with its message rate if everything else it does cost nothing.

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

    /// Round trips in the transport measurement.
    const BARE_CALLS: u64 = 200_000;

    /// Wall seconds per network message of bare request/reply round trips (`sim::rpc`, the
    /// transport of the Kafka and database models) between two otherwise idle nodes.
    fn wall_per_message() -> (f64, f64) {
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        let wall = std::time::Instant::now();
        let messages = rt.block_on(async {
            let handle = madsim::runtime::Handle::current();
            let server: std::net::SocketAddr = ([10, 9, 0, 1], 7000).into();
            handle
                .create_node()
                .name("echo")
                .ip(server.ip())
                .init(move || async move {
                    let _ = sim::rpc::serve(server, |n: u64, _| async move { n }).await;
                })
                .build();
            let caller = handle
                .create_node()
                .name("caller")
                .ip([10, 9, 0, 2].into())
                .build();
            caller
                .spawn(async move {
                    let timeout = std::time::Duration::from_secs(1);
                    // The echo node binds its port in its first instants.
                    let mut tries = 0;
                    while sim::rpc::call::<u64, u64>(server, 0, timeout)
                        .await
                        .is_err()
                    {
                        tries += 1;
                        assert!(tries < 100, "the echo node never answers");
                    }
                    let before = madsim::net::NetSim::current().stat().msg_count;
                    for n in 0..BARE_CALLS {
                        let echoed = sim::rpc::call::<u64, u64>(server, n, timeout).await;
                        assert_eq!(echoed.ok(), Some(n), "an idle network loses nothing");
                    }
                    madsim::net::NetSim::current().stat().msg_count - before
                })
                .await
                .expect("the caller's task")
        });
        let per_message = wall.elapsed().as_secs_f64() / messages.max(1) as f64;
        (per_message, messages as f64 / BARE_CALLS as f64)
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
        let (per_message, per_call) = wall_per_message();
        println!(
            "transport floor: {:.1} us of wall time per message of a bare round trip ({per_call:.1} messages each); at the swarm's {:.0} messages per simulated s, the network alone caps it at {:.0}x real time per core",
            per_message * 1e6,
            swarm.messages_per_s,
            1.0 / (swarm.messages_per_s * per_message)
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
