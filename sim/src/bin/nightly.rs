//! `ci/nightly` — nightly chaos: every embedded scenario, then every mutant on the scenarios
//! that must catch it, over a seed range derived from the date (or given), within a time
//! budget. Writes `junit.xml` and `summary.md` to `--out`, an artifact folder per failing
//! seed, and pins each new failing seed of a scenario in `sim/regressions.toml`.
//! Exit status: 0 every verdict as expected, 1 something unexpected, 2 a usage error.

#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(madsim)]
mod cli {
    use std::{path::PathBuf, process::ExitCode};

    use clap::Parser;
    use sim::{artifacts, nightly, runner, scenario};

    /// Nightly chaos over every scenario and mutant.
    #[derive(Parser, Debug)]
    #[command(name = "ci/nightly")]
    struct Args {
        /// The night (YYYY-MM-DD) whose seed range runs; default today (UTC).
        #[arg(long)]
        date: Option<String>,
        /// The first seed, instead of the date's.
        #[arg(long)]
        first_seed: Option<u64>,
        /// Seeds per scenario and per mutant in one round; rounds repeat, each on the next
        /// seeds, while the budget lasts.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// Rounds at most (default: as many as the budget allows).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: Option<u64>,
        /// Time budget in minutes: no batch starts after it; runs it left out are reported
        /// as skipped.
        #[arg(long, default_value_t = 60.0)]
        budget_min: f64,
        /// Seeds run at once (default: every core).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: Option<u64>,
        /// Where the reports and artifact folders go.
        #[arg(long, default_value = "sim-nightly")]
        out: PathBuf,
        /// The regression file new failing seeds are appended to.
        #[arg(long, default_value = nightly::REGRESSIONS_PATH)]
        regressions: PathBuf,
        /// Artifact folders per failing scenario.
        #[arg(long, default_value_t = 3)]
        artifacts_max: usize,
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let date = args.date.clone().unwrap_or_else(nightly::today);
        let first = match args.first_seed {
            Some(s) => s,
            None => match nightly::first_seed_of(&date) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e:#}");
                    return ExitCode::from(2);
                }
            },
        };
        let seeds = first..;
        let jobs = runner::jobs(args.jobs);
        if let Err(e) = std::fs::create_dir_all(&args.out) {
            eprintln!("cannot create {}: {e}", args.out.display());
            return ExitCode::from(2);
        }
        if !(args.budget_min.is_finite() && args.budget_min >= 0.0) {
            eprintln!(
                "--budget-min must be a number of minutes, not {}",
                args.budget_min
            );
            return ExitCode::from(2);
        }
        let budget = std::time::Duration::from_secs_f64(args.budget_min * 60.0);
        let started = std::time::Instant::now();
        let embedded = scenario::embedded();
        let plan: Vec<(scenario::Scenario, Option<String>)> = embedded
            .iter()
            .map(|s| (s.clone(), None))
            .chain(
                embedded
                    .iter()
                    .flat_map(|s| s.catches.iter().map(move |m| (s.clone(), Some(m.clone())))),
            )
            .collect();
        println!(
            "nightly chaos {date}: seeds from {first}, {} runs of {} seeds a round, budget {:.0} min, {jobs} jobs",
            plan.len(),
            args.seeds,
            args.budget_min
        );
        let artifacts_root = args.out.join("artifacts");
        let mut entries: Vec<nightly::Entry> = plan
            .iter()
            .map(|(s, mutant)| nightly::Entry {
                report: None,
                scenario: s.name.clone(),
                mutant: mutant.clone(),
                failures: Vec::new(),
            })
            .collect();
        let mut new_regressions = Vec::new();
        let mut round = 0u64;
        'rounds: while args.rounds.is_none_or(|r| round < r) {
            let batch = first + round * args.seeds..first + (round + 1) * args.seeds;
            println!("round {}: seeds {}..{}", round + 1, batch.start, batch.end);
            for ((s, mutant), entry) in plan.iter().zip(entries.iter_mut()) {
                if started.elapsed() >= budget {
                    break 'rounds;
                }
                let report = runner::report(s, mutant.as_deref(), batch.clone(), jobs, |_| {});
                println!("{}", report.line());
                // A mutant's failing seeds are its catches (expected); only an unmutated
                // scenario's are problems worth artifacts and regression entries.
                if mutant.is_none() && !report.ok() {
                    let selector = format!("--scenario {}", s.name);
                    for (seed, violations) in &report.failing {
                        let replay = runner::replay_command_of(&selector, mutant.as_deref(), *seed);
                        let dir = (entry.failures.len() < args.artifacts_max)
                            .then(|| {
                                artifacts::write(
                                    &artifacts_root,
                                    s,
                                    &selector,
                                    mutant.as_deref(),
                                    *seed,
                                )
                            })
                            .and_then(|r| match r {
                                Ok(w) => Some(w.dir.display().to_string()),
                                Err(e) => {
                                    eprintln!("  seed {seed}: no artifacts: {e:#}");
                                    None
                                }
                            });
                        println!("  seed {seed}: {}\n    replay: {replay}", violations[0]);
                        entry
                            .failures
                            .push((*seed, violations[0].to_string(), replay, dir));
                        new_regressions.push(nightly::Regression {
                            scenario: s.name.clone(),
                            seed: *seed,
                            checker: violations[0].checker.to_owned(),
                            found: date.clone(),
                            violation: violations[0].detail.clone(),
                        });
                    }
                }
                match &mut entry.report {
                    Some(total) => total.merge(report),
                    None => entry.report = Some(report),
                }
            }
            round += 1;
        }
        let mut pinned = Vec::new();
        if !new_regressions.is_empty() {
            let text = std::fs::read_to_string(&args.regressions).unwrap_or_default();
            match nightly::append_regressions(&text, &new_regressions) {
                Ok((updated, added)) if added > 0 => {
                    if let Err(e) = std::fs::write(&args.regressions, updated) {
                        eprintln!("cannot write {}: {e}", args.regressions.display());
                    } else {
                        println!(
                            "pinned {added} new failing seed(s) in {}",
                            args.regressions.display()
                        );
                        pinned = new_regressions;
                    }
                }
                Ok(_) => println!("every failing seed was already pinned"),
                Err(e) => eprintln!("{} is not valid: {e:#}", args.regressions.display()),
            }
        }
        let junit = args.out.join("junit.xml");
        let summary = args.out.join("summary.md");
        let written = std::fs::write(&junit, nightly::junit_xml(&date, &entries)).and_then(|()| {
            std::fs::write(
                &summary,
                nightly::markdown(&date, seeds.clone(), &entries, &pinned),
            )
        });
        if let Err(e) = written {
            eprintln!("cannot write the reports: {e}");
            return ExitCode::FAILURE;
        }
        println!(
            "{round} full round(s); reports: {} and {} ({:.1} min)",
            junit.display(),
            summary.display(),
            started.elapsed().as_secs_f64() / 60.0
        );
        if entries
            .iter()
            .all(|e| e.report.as_ref().is_none_or(runner::Report::ok))
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the nightly run needs `--cfg madsim`: run it as `ci/nightly`");
    std::process::exit(2);
}
