//! Nightly chaos (`ci/nightly`): every scenario and every mutant over a seed range derived from
//! the date, within a time budget; a JUnit XML report and a markdown summary; and each new
//! failing seed pinned as a regression entry (`sim/regressions.toml`) that `ci/sim`
//! replays from then on (`tests/sim/regressions.rs`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::runner::Report;

/// The regression file, embedded so `ci/sim` replays what it pins.
pub const REGRESSIONS: &str = include_str!("../regressions.toml");

/// The path of the regression file from the repository's root.
pub const REGRESSIONS_PATH: &str = "sim/regressions.toml";

/// One pinned failing seed: `scenario` under `seed` must pass once the bug is fixed, and
/// stays in the test run for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    pub scenario: String,
    pub seed: u64,
    /// The checker that failed.
    pub checker: String,
    /// The date the nightly run found it (`YYYY-MM-DD`).
    pub found: String,
    /// The first violation, as found.
    pub violation: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegressionFile {
    #[serde(default)]
    regression: Vec<Regression>,
}

/// The entries of a regression file.
pub fn parse_regressions(text: &str) -> anyhow::Result<Vec<Regression>> {
    Ok(toml::from_str::<RegressionFile>(text)?.regression)
}

/// `text` (a regression file) with `new` entries appended, skipping those already pinned
/// (same scenario and seed); the file's own text and comments are kept as they are.
pub fn append_regressions(text: &str, new: &[Regression]) -> anyhow::Result<(String, usize)> {
    let known = parse_regressions(text)?;
    let mut out = text.to_owned();
    let mut added = 0;
    for r in new {
        if known
            .iter()
            .chain(new[..added].iter())
            .any(|k| k.scenario == r.scenario && k.seed == r.seed)
        {
            continue;
        }
        if !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&toml::to_string(&RegressionFile {
            regression: vec![r.clone()],
        })?);
        added += 1;
    }
    Ok((out, added))
}

/// Seeds each night owns: its range starts at `YYYYMMDD × SEEDS_PER_NIGHT`.
pub const SEEDS_PER_NIGHT: u64 = 100_000;

/// The first seed of `date`'s nightly range (`YYYY-MM-DD` → `YYYYMMDD00000`), so each night
/// explores seeds no earlier night ran.
pub fn first_seed_of(date: &str) -> anyhow::Result<u64> {
    let shaped = date.len() == 10
        && date.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    anyhow::ensure!(shaped, "a date is YYYY-MM-DD, not {date:?}");
    let digits: String = date.chars().filter(char::is_ascii_digit).collect();
    Ok(digits.parse::<u64>()? * SEEDS_PER_NIGHT)
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date((secs / 86_400) as i64)
}

pub use platform::calendar::civil_date;

/// What the nightly run did with one report.
#[derive(Debug)]
pub struct Entry {
    pub report: Option<Report>,
    /// The scenario and mutant, also for a run skipped by the budget.
    pub scenario: String,
    pub mutant: Option<String>,
    /// Replay commands of failing seeds, with their artifact folder if written.
    pub failures: Vec<(u64, String, String, Option<String>)>,
}

impl Entry {
    fn name(&self) -> String {
        match &self.mutant {
            Some(m) => format!("{} +{m}", self.scenario),
            None => self.scenario.clone(),
        }
    }
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML report: one test case per scenario (and mutant); a failing scenario or a
/// mutant not caught is a failure, a run the budget left out is skipped.
pub fn junit_xml(date: &str, entries: &[Entry]) -> String {
    let failures = entries
        .iter()
        .filter(|e| e.report.as_ref().is_some_and(|r| !r.ok()))
        .count();
    let skipped = entries.iter().filter(|e| e.report.is_none()).count();
    let time: f64 = entries
        .iter()
        .filter_map(|e| e.report.as_ref().map(|r| r.wall_s))
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"nightly chaos {}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.1}\">",
        xml(date),
        entries.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"simulation\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.1}\">",
        entries.len()
    );
    for e in entries {
        let class = if e.mutant.is_some() {
            "mutants"
        } else {
            "scenarios"
        };
        let time = e.report.as_ref().map_or(0.0, |r| r.wall_s);
        let _ = write!(
            out,
            "    <testcase classname=\"{class}\" name=\"{}\" time=\"{time:.1}\"",
            xml(&e.name())
        );
        match &e.report {
            None => out.push_str("><skipped message=\"time budget spent\"/></testcase>\n"),
            Some(r) if r.ok() => {
                let _ = writeln!(
                    out,
                    "><system-out>{}</system-out></testcase>",
                    xml(&r.line())
                );
            }
            Some(r) => {
                let mut body = r.line();
                for (seed, first, replay, artifacts) in &e.failures {
                    let _ = write!(body, "\nseed {seed}: {first}\n  replay: {replay}");
                    if let Some(dir) = artifacts {
                        let _ = write!(body, "\n  artifacts: {dir}");
                    }
                }
                let _ = writeln!(
                    out,
                    "><failure message=\"{}\">{}</failure></testcase>",
                    xml(r.verdict()),
                    xml(&body)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The markdown summary.
pub fn markdown(
    date: &str,
    seeds: std::ops::RangeFrom<u64>,
    entries: &[Entry],
    pinned: &[Regression],
) -> String {
    let ran: Vec<&Report> = entries.iter().filter_map(|e| e.report.as_ref()).collect();
    let bad = ran.iter().filter(|r| !r.ok()).count();
    let mut out = format!(
        "# Nightly chaos {date}\n\nSeeds from {} on, {} per scenario and mutant at most; {} of {} runs done within the budget; {}.\n\n",
        seeds.start,
        ran.iter().map(|r| r.seeds).max().unwrap_or(0),
        ran.len(),
        entries.len(),
        if bad == 0 {
            "every verdict as expected".to_owned()
        } else {
            format!("**{bad} unexpected**")
        }
    );
    out.push_str("| scenario | mutant | verdict | failing seeds | simulated s | wall s |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for e in entries {
        match &e.report {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} of {} | {:.0} | {:.1} |",
                    e.scenario,
                    e.mutant.as_deref().unwrap_or("-"),
                    r.verdict(),
                    r.failing.len(),
                    r.seeds,
                    r.simulated_s,
                    r.wall_s
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| {} | {} | skipped (budget) | - | - | - |",
                    e.scenario,
                    e.mutant.as_deref().unwrap_or("-")
                );
            }
        }
    }
    let failing: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.report.as_ref().is_some_and(|r| !r.ok()))
        .collect();
    if !failing.is_empty() {
        out.push_str("\n## Failures\n");
        for e in failing {
            let _ = writeln!(out, "\n### {}\n", e.name());
            if e.failures.is_empty() {
                out.push_str("The mutant was not caught on any seed.\n");
            }
            for (seed, first, replay, artifacts) in &e.failures {
                let _ = writeln!(out, "- seed {seed}: {first}\n  - replay: `{replay}`");
                if let Some(dir) = artifacts {
                    let _ = writeln!(out, "  - artifacts: `{dir}`");
                }
            }
        }
    }
    if !pinned.is_empty() {
        let _ = writeln!(out, "\n## New regression entries ({REGRESSIONS_PATH})\n");
        for r in pinned {
            let _ = writeln!(out, "- {} seed {} [{}]", r.scenario, r.seed, r.checker);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scenario: &str, seed: u64) -> Regression {
        Regression {
            scenario: scenario.into(),
            seed,
            checker: "money".into(),
            found: "2026-11-30".into(),
            violation: "order o-1 charged twice".into(),
        }
    }

    #[test]
    fn the_embedded_regression_file_parses() {
        parse_regressions(REGRESSIONS).expect("valid");
    }

    #[test]
    fn appending_keeps_the_text_and_skips_what_is_pinned() {
        let text = "# pinned seeds\n";
        let (once, added) =
            append_regressions(text, &[entry("swarm", 7), entry("swarm", 7)]).expect("append");
        assert_eq!(added, 1);
        assert!(once.starts_with("# pinned seeds\n"));
        assert_eq!(
            parse_regressions(&once).expect("parse"),
            [entry("swarm", 7)]
        );
        let (twice, added) =
            append_regressions(&once, &[entry("swarm", 7), entry("swarm", 8)]).expect("append");
        assert_eq!(added, 1);
        assert_eq!(
            parse_regressions(&twice).expect("parse"),
            [entry("swarm", 7), entry("swarm", 8)]
        );
    }

    #[test]
    fn dates_give_seed_ranges() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_787), "2026-11-30");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(
            first_seed_of("2026-11-30").expect("date"),
            2_026_113_000_000
        );
        assert!(first_seed_of("30.11.2026").is_err());
        assert!(first_seed_of("2026-11-3").is_err());
    }

    #[test]
    fn junit_escapes_and_counts() {
        let report = Report {
            scenario: "swarm".into(),
            mutant: None,
            first_seed: 1,
            seeds: 2,
            failing: vec![(
                2,
                vec![crate::checkers::Violation {
                    checker: "money",
                    detail: "a <b> & \"c\"".into(),
                }],
            )],
            orders: 1,
            delivered: 0,
            cancelled: 0,
            simulated_s: 1.0,
            messages: 0,
            wall_s: 1.0,
            jobs: 1,
        };
        let entries = vec![
            Entry {
                report: Some(report),
                scenario: "swarm".into(),
                mutant: None,
                failures: vec![(
                    2,
                    "[money] a <b> & \"c\"".into(),
                    "ci/simulate --scenario swarm --seed 2".into(),
                    None,
                )],
            },
            Entry {
                report: None,
                scenario: "happy-path".into(),
                mutant: Some("acks-1".into()),
                failures: vec![],
            },
        ];
        let x = junit_xml("2026-11-30", &entries);
        assert!(x.contains("tests=\"2\" failures=\"1\" skipped=\"1\""));
        assert!(x.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(!x.contains("<b>"));
        let md = markdown("2026-11-30", 1.., &entries, &[entry("swarm", 2)]);
        assert!(md.contains("| swarm | - | fail | 1 of 2 |"));
        assert!(md.contains("skipped (budget)"));
        assert!(md.contains("- swarm seed 2 [money]"));
    }
}
