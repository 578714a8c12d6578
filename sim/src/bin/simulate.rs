//! `ci/simulate` — the simulated marketplace under the fault scenarios, over many seeds.
//!
//! ```text
//! ci/simulate [--scenario NAME | --scenario-file PATH] [--seeds N] [--first-seed S] [--seed S]
//!             [--mutant NAME] [--jobs N]
//! ci/simulate --all-mutants [--seeds N]
//! ```
//! Seeds run `--jobs` at a time (default: every core); each seed runs on its own thread and
//! runtime, so its result is the same as when it runs alone.
//! Without arguments: every embedded scenario over 5 seeds. `--scenario-file` runs the
//! scenarios of a file or a folder of `*.toml` files without rebuilding. Prints a progress bar, a verdict
//! per scenario with its speed, and for every failing seed the command that replays it.
//! With `--mutant`, a scenario passes when the mutant is caught; `--all-mutants` runs every
//! mutant on each scenario that names it in `catches` (`ci/mutants`).

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    use std::{io::Write, time::Instant};

    use platform::Mutants;
    use sim::{runner, scenario};

    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut name: Option<String> = None;
    let mut file: Option<String> = None;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut seeds = 5u64;
    let mut first = 1u64;
    let mut mutant: Option<String> = None;
    let mut all_mutants = false;
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned();
        let num = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok());
        match args[i].as_str() {
            "--scenario" => name = value,
            "--scenario-file" => file = value,
            "--jobs" => jobs = num(value).unwrap_or(0) as usize,
            "--seeds" => seeds = num(value).unwrap_or(0),
            "--first-seed" => first = num(value).unwrap_or(0),
            "--seed" => {
                first = num(value).unwrap_or(0);
                seeds = 1;
            }
            "--mutant" => mutant = value,
            "--all-mutants" => {
                all_mutants = true;
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!("usage: ci/simulate [--scenario NAME | --scenario-file PATH] [--seeds N] [--first-seed S] [--seed S] [--mutant NAME] [--all-mutants] [--jobs N]");
                println!(
                    "scenarios: {}",
                    scenario::EMBEDDED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                println!("mutants: {}", Mutants::NAMES.join(", "));
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}; see --help");
                return std::process::ExitCode::from(2);
            }
        }
        i += 2;
    }
    if seeds == 0 {
        eprintln!("--seeds/--seed need a positive number");
        return std::process::ExitCode::from(2);
    }
    if jobs == 0 {
        eprintln!("--jobs needs a positive number");
        return std::process::ExitCode::from(2);
    }
    let mutants = match mutant.as_deref() {
        None => Mutants::default(),
        Some(m) => match Mutants::named(m) {
            Some(x) => x,
            None => {
                eprintln!("unknown mutant {m:?}; known: {}", Mutants::NAMES.join(", "));
                return std::process::ExitCode::from(2);
            }
        },
    };
    let scenarios: Vec<scenario::Scenario> = match (&name, &file) {
        (Some(_), Some(_)) => {
            eprintln!("--scenario and --scenario-file exclude each other");
            return std::process::ExitCode::from(2);
        }
        (Some(n), None) => match scenario::by_name(n) {
            Some(s) => vec![s],
            None => {
                eprintln!("unknown scenario {n:?}; see --help");
                return std::process::ExitCode::from(2);
            }
        },
        (None, Some(path)) => match scenario::from_path(std::path::Path::new(path)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e:#}");
                return std::process::ExitCode::from(2);
            }
        },
        (None, None) => scenario::embedded(),
    };
    // (scenario, mutant) pairs to run: the plain scenarios, or every mutant where it is caught.
    let runs: Vec<(scenario::Scenario, Option<String>)> = if all_mutants {
        scenario::embedded()
            .into_iter()
            .flat_map(|s| {
                s.catches
                    .clone()
                    .into_iter()
                    .map(move |m| (s.clone(), Some(m)))
            })
            .collect()
    } else {
        scenarios.into_iter().map(|s| (s, mutant.clone())).collect()
    };
    let mut all_ok = true;
    let total_wall = Instant::now();
    for (s, mutant) in &runs {
        let mutants = match mutant.as_deref() {
            Some(m) => Mutants::named(m).unwrap_or(mutants),
            None => mutants,
        };
        let s = &s.clone();
        let started = Instant::now();
        let mut done = 0u64;
        let mut failing = Vec::new();
        let (mut orders, mut delivered, mut cancelled, mut simulated) = (0, 0, 0, 0.0);
        runner::sweep_parallel(s, mutants, first..first + seeds, jobs, |r| {
            done += 1;
            orders += r.outcome.orders;
            delivered += r.outcome.delivered;
            cancelled += r.outcome.cancelled;
            simulated += r.outcome.simulated.as_secs_f64();
            if !r.outcome.violations.is_empty() {
                failing.push((r.seed, r.outcome.violations.clone()));
            }
            let width = 30;
            let filled = (done * width / seeds) as usize;
            print!(
                "\r{:<32} [{}{}] {done}/{seeds} seeds, {} failing",
                match mutant {
                    Some(m) => format!("{} +{m}", s.name),
                    None => s.name.clone(),
                },
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                failing.len()
            );
            let _ = std::io::stdout().flush();
        });
        failing.sort_by_key(|(seed, _)| *seed);
        let wall = started.elapsed().as_secs_f64();
        println!();
        let caught = !failing.is_empty();
        let ok = if mutant.is_some() { caught } else { !caught };
        all_ok &= ok;
        let verdict = match (mutant.is_some(), caught) {
            (false, false) => "PASS".to_owned(),
            (false, true) => format!("FAIL on {} of {seeds} seeds", failing.len()),
            (true, true) => format!(
                "CAUGHT {} on {} of {seeds} seeds",
                mutant.as_deref().unwrap_or_default(),
                failing.len()
            ),
            (true, false) => format!("NOT CAUGHT {}", mutant.as_deref().unwrap_or_default()),
        };
        println!(
            "  {verdict}: {orders} orders ({delivered} delivered, {cancelled} cancelled); {simulated:.0} simulated s in {wall:.1} wall s ({:.0}x), {:.2} seeds/s",
            simulated / wall.max(1e-9),
            seeds as f64 / wall.max(1e-9)
        );
        for (seed, violations) in failing.iter().take(5) {
            println!(
                "  seed {seed}: {} violation(s), first: {}",
                violations.len(),
                violations[0]
            );
            if seeds == 1 {
                // A replay of one seed: every violation, not just the first.
                for v in &violations[1..] {
                    println!("    {v}");
                }
            }
            let selector = match &file {
                Some(path) => format!("--scenario-file {path}"),
                None => format!("--scenario {}", s.name),
            };
            println!(
                "    replay: {}",
                runner::replay_command_of(&selector, mutant.as_deref(), *seed)
            );
        }
    }
    println!(
        "total wall time {:.1} s",
        total_wall.elapsed().as_secs_f64()
    );
    if all_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the simulation needs `--cfg madsim`: run it as `ci/simulate`");
    std::process::exit(2);
}
