//! Every failing seed nightly chaos pinned (`sim/regressions.toml`) passes.

use platform::Mutants;
use sim::{nightly, runner, scenario};

#[test]
fn every_pinned_failing_seed_passes() {
    let pinned = nightly::parse_regressions(nightly::REGRESSIONS).expect("regression file");
    for r in &pinned {
        let s = scenario::by_name(&r.scenario)
            .unwrap_or_else(|| panic!("regression names unknown scenario {}", r.scenario));
        let run = runner::run_seed(&s, Mutants::default(), r.seed);
        assert!(
            run.outcome.violations.is_empty(),
            "pinned seed {} of {} (found {}, [{}]) fails again: {}\nreplay: {}",
            r.seed,
            r.scenario,
            r.found,
            r.checker,
            run.outcome.violations[0],
            runner::replay_command(&r.scenario, None, r.seed)
        );
    }
}
