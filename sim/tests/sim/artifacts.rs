//! A failing seed explains itself: the artifact folder of a mutant's catch.

use platform::Mutants;
use sim::{artifacts, runner, scenario};

#[test]
fn a_caught_mutant_leaves_a_replayable_shrunk_schedule_and_a_timeline() {
    let s = scenario::by_name("swarm").expect("scenario");
    let mutant = "publish-without-outbox";
    let m = Mutants::named(mutant).expect("mutant");
    let seed = (1..=10)
        .find(|&seed| !runner::run_seed(&s, m, seed).outcome.violations.is_empty())
        .expect("the mutant is caught within 10 seeds");
    let root = std::env::temp_dir().join(format!("sim-artifacts-test-{}", std::process::id()));
    let w = artifacts::write(&root, &s, "--scenario swarm", Some(mutant), seed).expect("written");
    for file in [
        "README.txt",
        "schedule.toml",
        "shrunk.toml",
        "timeline.html",
    ] {
        assert!(w.dir.join(file).is_file(), "{file} missing");
    }
    assert!(w.reproduced, "the pinned schedule fails as the seed did");
    assert!(w.shrunk.len() <= w.faults);

    // The shrunk file still fails the same checker under the seed.
    let shrunk = scenario::from_path(&w.dir.join("shrunk.toml")).expect("scenario file");
    let again = runner::run_seed(&shrunk[0], m, seed);
    assert!(
        again
            .outcome
            .violations
            .iter()
            .any(|v| v.checker == w.checker),
        "shrunk schedule no longer fails [{}]",
        w.checker
    );
    let readme = std::fs::read_to_string(w.dir.join("README.txt")).expect("readme");
    assert!(readme.contains(&format!("--mutant {mutant} --seed {seed}")));
    let page = std::fs::read_to_string(w.dir.join("timeline.html")).expect("page");
    assert!(page.contains("<svg") && page.contains("orders-db"));
    std::fs::remove_dir_all(&root).expect("clean up");
}

#[test]
fn a_passing_seed_has_no_artifact() {
    let s = scenario::by_name("happy-path").expect("scenario");
    let root = std::env::temp_dir().join(format!("sim-artifacts-none-{}", std::process::id()));
    let err = artifacts::write(&root, &s, "--scenario happy-path", None, 1).expect_err("passes");
    assert!(err.to_string().contains("passed"), "{err}");
}
