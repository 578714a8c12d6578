//! `ci/simulate` — the simulated marketplace under the fault scenarios, over many seeds.
//! `ci/simulate --help` explains every option; exit codes:
//! 0 every verdict is the expected one, 1 a scenario failed or a mutant was not caught,
//! 2 a usage error (a bad option, an unknown scenario or mutant, a scenario file refused).

#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(madsim)]
mod cli {
    use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

    use clap::{CommandFactory, Parser};
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use platform::Mutants;
    use sim::{artifacts, runner, scenario};

    fn after_help() -> String {
        format!(
            "Scenarios: {}\nMutants: {}\n\nExit status: 0 every verdict as expected, 1 a scenario failed or a mutant was not caught, 2 a usage error.\nA failing seed leaves a folder under --artifacts: README.txt (replay commands), schedule.toml, shrunk.toml, timeline.html.",
            scenario::EMBEDDED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            Mutants::NAMES.join(", ")
        )
    }

    /// The simulated marketplace under fault scenarios, over many seeds. Without options:
    /// every embedded scenario over 5 seeds.
    #[derive(Parser, Debug)]
    #[command(name = "ci/simulate", after_help = after_help())]
    struct Args {
        /// Run one embedded scenario.
        #[arg(long, value_name = "NAME", conflicts_with = "scenario_file")]
        scenario: Option<String>,
        /// Run the scenario file PATH, or every *.toml in the folder PATH, without rebuilding.
        #[arg(long, value_name = "PATH")]
        scenario_file: Option<PathBuf>,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Run exactly this seed (replay).
        #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
        seed: Option<u64>,
        /// Break the code on purpose: the scenario passes when this mutant is caught.
        #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(Mutants::NAMES))]
        mutant: Option<String>,
        /// Run every mutant on each embedded scenario that names it in `catches`.
        #[arg(long, conflicts_with_all = ["mutant", "scenario", "scenario_file"])]
        all_mutants: bool,
        /// Seeds run at once (default: every core); each seed's result is the same as alone.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: Option<u64>,
        /// Print a machine-readable summary (JSON) on stdout; the human lines go to stderr.
        #[arg(long)]
        json: bool,
        /// Where failing seeds leave their artifact folders.
        #[arg(long, value_name = "DIR", default_value = "sim-artifacts")]
        artifacts: PathBuf,
        /// Artifact folders per scenario (0: none); each shrinks its schedule, which takes up
        /// to 64 runs of the seed. Not written under --all-mutants.
        #[arg(long, value_name = "N", default_value_t = 1)]
        artifacts_max: usize,
        /// Print a completion script for SHELL and exit.
        #[arg(long, value_name = "SHELL")]
        completions: Option<clap_complete::Shell>,
    }

    /// Refuses the command line with `message` (exit status 2).
    fn usage(message: String) -> ! {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit()
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        if let Some(shell) = args.completions {
            clap_complete::generate(
                shell,
                &mut Args::command(),
                "simulate",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        let (first, seeds) = match args.seed {
            Some(s) => (s, 1),
            None => (args.first_seed, args.seeds),
        };
        let jobs = runner::jobs(args.jobs);
        let (scenarios, selector): (Vec<scenario::Scenario>, Option<String>) =
            match (&args.scenario, &args.scenario_file) {
                (Some(n), _) => match scenario::by_name(n) {
                    Some(s) => (vec![s], Some(format!("--scenario {n}"))),
                    None => usage(format!("unknown scenario {n:?}; see --help")),
                },
                (None, Some(path)) => match scenario::from_path(path) {
                    Ok(s) => (s, Some(format!("--scenario-file {}", path.display()))),
                    Err(e) => usage(format!("{e:#}")),
                },
                (None, None) => (scenario::embedded(), None),
            };
        // (scenario, mutant) pairs: the scenarios as asked, or every mutant where it is caught.
        let runs: Vec<(scenario::Scenario, Option<String>)> = if args.all_mutants {
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
            scenarios
                .into_iter()
                .map(|s| (s, args.mutant.clone()))
                .collect()
        };

        // Human lines go to stdout, or to stderr when stdout carries the JSON summary.
        let say = |line: &str| {
            if args.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        let tty = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        let mut reports = Vec::new();
        let mut all_ok = true;
        for (s, mutant) in &runs {
            let bar = if tty {
                ProgressBar::with_draw_target(Some(seeds), ProgressDrawTarget::stderr())
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:32} [{bar:30}] {pos}/{len} seeds, {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>."),
            );
            let label = match mutant {
                Some(m) => format!("{} +{m}", s.name),
                None => s.name.clone(),
            };
            bar.set_prefix(label);
            let mut failing = 0;
            bar.set_message("0 failing");
            let report = runner::report(s, mutant.as_deref(), first..first + seeds, jobs, |r| {
                failing += usize::from(!r.outcome.violations.is_empty());
                bar.set_message(format!("{failing} failing"));
                bar.inc(1);
            });
            bar.finish_and_clear();
            all_ok &= report.ok();
            say(&report.line());
            let selector = selector
                .clone()
                .unwrap_or_else(|| format!("--scenario {}", s.name));
            let mut seeds_json = Vec::new();
            for (i, (seed, violations)) in report.failing.iter().enumerate() {
                let replay = runner::replay_command_of(&selector, mutant.as_deref(), *seed);
                if i < 5 {
                    say(&format!(
                        "  seed {seed}: {} violation(s), first: {}",
                        violations.len(),
                        violations[0]
                    ));
                    if seeds == 1 {
                        for v in &violations[1..] {
                            say(&format!("    {v}"));
                        }
                    }
                    say(&format!("    replay: {replay}"));
                }
                let mut artifact = None;
                if i < args.artifacts_max && !args.all_mutants {
                    match artifacts::write(&args.artifacts, s, &selector, mutant.as_deref(), *seed)
                    {
                        Ok(w) => {
                            say(&format!(
                                "    artifacts: {} (checker [{}]; schedule {} fault(s), shrunk to {} in {} runs{})",
                                w.dir.display(),
                                w.checker,
                                w.faults,
                                w.shrunk.len(),
                                w.shrink_runs,
                                if w.reproduced { "" } else { "; the pinned schedule did not reproduce" }
                            ));
                            for (t, a) in &w.shrunk {
                                say(&format!("      {t:>6} ms  {}", artifacts::describe(a)));
                            }
                            artifact = Some(w.dir.display().to_string());
                        }
                        Err(e) => say(&format!("    artifacts: not written: {e:#}")),
                    }
                }
                seeds_json.push(serde_json::json!({
                    "seed": seed,
                    "violations": violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "replay": replay,
                    "artifacts": artifact,
                }));
            }
            reports.push(serde_json::json!({
                "scenario": report.scenario,
                "mutant": report.mutant,
                "first_seed": report.first_seed,
                "seeds": report.seeds,
                "verdict": report.verdict(),
                "ok": report.ok(),
                "failing": seeds_json,
                "orders": report.orders,
                "delivered": report.delivered,
                "cancelled": report.cancelled,
                "simulated_s": report.simulated_s,
                "wall_s": report.wall_s,
                "messages": report.messages,
            }));
        }
        let wall = started.elapsed().as_secs_f64();
        say(&format!("total wall time {wall:.1} s"));
        if args.json {
            let summary =
                serde_json::json!({ "ok": all_ok, "wall_s": wall, "jobs": jobs, "runs": reports });
            println!("{summary:#}");
        }
        if all_ok {
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
    eprintln!("the simulation needs `--cfg madsim`: run it as `ci/simulate`");
    std::process::exit(2);
}
