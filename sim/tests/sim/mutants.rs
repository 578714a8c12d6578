//! Teeth: each mutant must make the checkers fail within a bounded number of seeds, on the
//! scenario that names it in `catches`, on a seed the correct system passes.

use platform::Mutants;
use sim::{runner, scenario};

/// Seeds tried before a mutant counts as not caught.
const SEEDS_MAX: u64 = 20;

fn caught(mutant: &str) {
    let m = Mutants::named(mutant).expect("known mutant");
    let scenarios: Vec<_> = scenario::embedded()
        .into_iter()
        .filter(|s| s.catches.iter().any(|c| c == mutant))
        .collect();
    assert!(
        !scenarios.is_empty(),
        "no scenario is meant to catch {mutant}"
    );
    for s in scenarios {
        let found = (1..=SEEDS_MAX).find_map(|seed| {
            let r = runner::run_seed(&s, m, seed);
            (!r.outcome.violations.is_empty()).then_some((seed, r.outcome.violations))
        });
        let Some((seed, violations)) = found else {
            panic!("mutant {mutant} survived {SEEDS_MAX} seeds of {}", s.name);
        };
        // The failure is the mutant's: the same seed passes with the correct system.
        let unmutated = runner::run_seed(&s, Mutants::default(), seed);
        assert!(
            unmutated.outcome.violations.is_empty(),
            "{} fails seed {seed} even unmutated: {:?}\n  replay: {}",
            s.name,
            unmutated.outcome.violations,
            runner::replay_command(&s.name, None, seed)
        );
        println!(
            "{mutant} caught by {} at seed {seed}: {}",
            s.name, violations[0]
        );
        println!(
            "  replay: {}",
            runner::replay_command(&s.name, Some(mutant), seed)
        );
    }
}

#[test]
fn publishing_without_the_outbox_loses_events_and_is_caught() {
    caught("publish-without-outbox");
}

#[test]
fn charging_without_an_idempotency_key_charges_twice_and_is_caught() {
    caught("charge-without-idempotency-key");
}

#[test]
fn calling_the_psp_without_an_idempotency_key_charges_twice_and_is_caught() {
    caught("psp-call-without-idempotency-key");
}

#[test]
fn a_consumer_without_its_inbox_double_counts_and_is_caught() {
    caught("consumer-without-inbox");
}

#[test]
fn auto_commit_before_processing_skips_records_and_is_caught() {
    caught("auto-commit-before-processing");
}

#[test]
fn acks_1_loses_acknowledged_events_and_is_caught() {
    caught("acks-1");
}

#[test]
fn idempotence_off_duplicates_retried_sends_and_is_caught() {
    caught("idempotence-off");
}

#[test]
fn unclean_leader_election_loses_acknowledged_events_and_is_caught() {
    caught("unclean-leader-election");
}

#[test]
fn min_insync_replicas_1_loses_acknowledged_events_on_power_loss_and_is_caught() {
    caught("min-insync-replicas-1");
}

#[test]
fn work_without_claims_runs_one_saga_or_relay_on_two_instances_at_once_and_is_caught() {
    caught("work-without-claims");
}

#[test]
fn compensating_a_timed_out_delivery_without_asking_gives_goods_away_and_is_caught() {
    caught("compensate-without-asking");
}

#[test]
fn ignoring_the_couriers_answer_to_a_cancel_gives_goods_away_and_is_caught() {
    caught("cancel-ignores-courier-answer");
}

#[test]
fn shedding_after_the_order_is_created_half_creates_orders_and_is_caught() {
    caught("shed-after-create");
}

#[test]
fn a_case_sensitive_email_key_makes_two_accounts_of_one_email_and_is_caught() {
    caught("email-key-case-sensitive");
}

#[test]
fn skipping_the_owner_check_shows_orders_to_other_users_and_is_caught() {
    caught("owner-check-skipped");
}

#[test]
fn answering_304_without_comparing_tags_hides_changes_and_is_caught() {
    caught("not-modified-unchecked");
}

#[test]
fn charging_the_price_the_client_names_is_caught() {
    caught("order-price-from-client");
}

#[test]
fn a_search_without_its_status_filter_finds_deleted_ads_and_is_caught() {
    caught("search-shows-inactive");
}

#[test]
fn a_cache_that_is_never_invalidated_answers_304_for_a_changed_ad_and_is_caught() {
    caught("cache-not-invalidated");
}

#[test]
fn marking_an_upload_ready_without_looking_attaches_missing_photos_and_is_caught() {
    caught("upload-unchecked");
}

#[test]
fn publishing_moderation_results_without_the_outbox_is_caught() {
    caught("results-without-outbox");
}

#[test]
fn bans_that_change_nothing_are_caught() {
    caught("ban-not-enforced");
}

#[test]
fn live_sessions_that_resume_without_replaying_the_log_miss_updates_and_are_caught() {
    caught("notify-without-replay");
}

#[test]
fn live_updates_without_hints_between_instances_arrive_late_and_are_caught() {
    caught("notify-without-hints");
}

#[test]
fn sending_messages_without_an_idempotency_key_delivers_twice_and_is_caught() {
    caught("message-without-idempotency-key");
}

#[test]
fn gateway_breakers_that_never_open_keep_clients_waiting_and_are_caught() {
    caught("breaker-never-opens");
}

#[test]
fn a_relay_that_drops_trace_context_is_caught() {
    caught("relay-drops-trace");
}

#[test]
fn messages_sent_outside_their_orders_trace_are_caught() {
    caught("message-drops-trace");
}

#[test]
fn every_mutant_is_named_by_some_scenario() {
    let all = scenario::embedded();
    for m in Mutants::NAMES {
        assert!(
            all.iter().any(|s| s.catches.iter().any(|c| c == m)),
            "{m} is caught by no scenario"
        );
    }
}
