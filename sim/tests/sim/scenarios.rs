use crate::support::scenario_passes;
use sim::scenario;

#[test]
fn happy_path_delivers_or_cancels_every_order_and_publishes_every_change() {
    scenario_passes("happy-path");
}

#[test]
fn moderation_workers_crashing_mid_batch_decide_every_report_once() {
    scenario_passes("moderation-workers-crash");
}

#[test]
fn a_moderation_provider_outage_delays_decisions_and_loses_none() {
    scenario_passes("moderation-provider-outage");
}

#[test]
fn moderation_workers_slower_than_max_poll_interval_lose_their_partitions_without_double_decisions()
{
    let s = scenario::by_name("moderation-slow-workers").expect("scenario");
    // The scenario is only worth its name if a task is taken over: a worker leaves its group
    // mid-batch and another asks the provider about the same task again. Whether a given
    // seed shows it depends on the schedule, so the first seeds are searched; every seed
    // run must pass.
    let mut taken_over = None;
    for seed in 1..=8 {
        let run = sim::runner::run_seed(&s, platform::Mutants::default(), seed);
        assert!(
            run.outcome.violations.is_empty(),
            "seed {seed}: {:?}",
            run.outcome.violations
        );
        let [asked, again] = counted(&run.outcome.trace, "asked of the moderation provider")[..]
        else {
            panic!("two counts");
        };
        assert!(asked >= 15, "seed {seed}: {asked} tasks asked");
        if again >= 1 {
            taken_over = Some(seed);
            break;
        }
    }
    assert!(
        taken_over.is_some(),
        "no task was asked twice on seeds 1 to 8: no worker lost its partitions mid-batch"
    );
}

/// The count at the start of the trace line that contains `what`.
fn counted(trace: &[String], what: &str) -> Vec<usize> {
    trace
        .iter()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn the_workload_reports_and_moderation_decides_and_bans_some() {
    let s = sim::scenario::by_name("happy-path").expect("scenario");
    let run = sim::runner::run_seed(&s, platform::Mutants::default(), 5);
    let [accepted, decided, banned] = counted(&run.outcome.trace, "report(s) accepted")[..] else {
        panic!("three counts");
    };
    assert!(accepted >= 15, "{accepted} reports accepted");
    assert!(decided >= accepted, "{decided} of {accepted} decided");
    assert!(
        banned >= 2 && banned < decided,
        "{banned} banned of {decided}"
    );
}

#[test]
fn the_workload_attaches_photos_through_the_fake_object_store() {
    // The photos checker is only as good as the uploads that get through: the model must
    // accept what the media service signs.
    let s = sim::scenario::by_name("happy-path").expect("scenario");
    let run = sim::runner::run_seed(&s, platform::Mutants::default(), 3);
    let line = run
        .outcome
        .trace
        .iter()
        .find(|l| l.contains("photo(s) attached"))
        .expect("a photo line");
    let attached: usize = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(attached >= 3, "{line}");
}

#[test]
fn a_service_crash_mid_saga_resumes_every_saga_without_double_charges() {
    scenario_passes("service-crash-mid-saga");
}

#[test]
fn msk_nsk_partition_loses_no_order_and_no_event() {
    scenario_passes("msk-nsk-partition");
}

#[test]
fn msk_broker_loss_loses_no_acknowledged_event() {
    scenario_passes("msk-broker-loss");
}

#[test]
fn broker_loss_during_partition_holds_events_in_the_outbox_until_heal() {
    scenario_passes("broker-loss-during-partition");
}

#[test]
fn psp_timeouts_and_lost_db_replies_never_charge_twice() {
    scenario_passes("psp-timeouts");
}

#[test]
fn database_crash_keeps_every_committed_order_and_event() {
    scenario_passes("database-crash");
}

#[test]
fn nsk_one_way_partition_loses_no_order_and_no_event() {
    scenario_passes("nsk-one-way-partition");
}

#[test]
fn psp_timeouts_and_duplicate_callbacks_settle_each_payment_once() {
    scenario_passes("psp-timeouts-and-duplicate-callbacks");
}

#[test]
fn analytics_crash_counts_every_status_change_exactly_once() {
    scenario_passes("analytics-crash");
}

#[test]
fn rolling_broker_restart_loses_no_acknowledged_event() {
    scenario_passes("rolling-broker-restart");
}

#[test]
fn clean_election_waits_out_the_loss_of_both_msk_brokers_without_losing_events() {
    scenario_passes("unclean-election-bait");
}

#[test]
fn a_lone_leader_losing_power_loses_no_acknowledged_event_with_min_insync_replicas_2() {
    scenario_passes("lone-leader-power-loss");
}

#[test]
fn a_swarm_of_random_faults_breaks_no_guarantee() {
    scenario_passes("swarm");
}

#[test]
fn an_instance_crash_hands_its_work_to_the_other_instance() {
    scenario_passes("instance-crash-takeover");
}

#[test]
fn a_rolling_restart_of_every_instance_breaks_no_guarantee() {
    scenario_passes("rolling-instance-restart");
}

#[test]
fn a_burst_far_beyond_capacity_passes_every_checker() {
    scenario_passes("order-burst");
}

#[test]
fn a_region_cut_past_the_delivery_deadline_never_cancels_delivered_goods() {
    scenario_passes("delivery-cut-past-deadline");
}

#[test]
fn a_courier_down_past_the_deadline_is_asked_before_the_order_is_cancelled() {
    scenario_passes("courier-down-past-deadline");
}

#[test]
fn a_courier_slower_than_the_deadline_is_cancelled_in_transit_and_refunded() {
    scenario_passes("slow-courier");
}

#[test]
fn a_psp_answering_after_the_deadline_leaves_no_money_with_a_cancelled_order() {
    scenario_passes("psp-answers-after-deadline");
}

#[test]
fn a_slow_order_database_is_refused_fast_and_every_order_still_ends_once() {
    scenario_passes("order-database-slow");
}

#[test]
fn every_embedded_scenario_parses_and_names_known_mutants() {
    let all = sim::scenario::embedded();
    assert_eq!(all.len(), sim::scenario::EMBEDDED.len());
    for (name, _) in sim::scenario::EMBEDDED {
        assert!(
            all.iter().any(|s| s.name == *name),
            "fault-scenarios/{name}.toml names itself differently"
        );
    }
}

/// A scenario file with `extra` appended to a minimal valid head.
fn with(extra: &str) -> anyhow::Result<sim::scenario::Scenario> {
    sim::scenario::parse(&format!(
        "name = \"x\"\ndescription = \"\"\nfault_phase_s = 1\nheal_phase_s_max = 1\n{extra}"
    ))
}

#[test]
fn a_scenario_file_with_a_mistake_is_refused_with_the_reason() {
    assert!(with("").is_ok());
    let refused = [
        ("catches = [\"nope\"]", "unknown mutant"),
        (
            "[[faults]]\nat_ms = [5, 1]\naction = \"heal-network\"",
            "at_ms range reversed",
        ),
        (
            "[[faults]]\nat_ms = [1, 5]\naction = \"explode\"",
            "unknown variant",
        ),
        ("checkers = [\"vibes\"]", "unknown checker"),
        ("[client]\nacks = \"2\"", "acks must be"),
        (
            "[kafka]\nmin_insync_replicas = 4",
            "min_insync_replicas must be",
        ),
        ("[kafka]\nlinger_ms = 5", "unknown field"),
        (
            "[topology]\nclient_racks = { search = \"nsk\" }",
            "unknown service",
        ),
        (
            "[[faults]]\nat_ms = [1, 5]\naction = \"kill\"\nnode = \"msk-9\"",
            "unknown node",
        ),
        (
            "[[faults]]\nat_ms = [1, 5]\naction = \"partition-one-way\"\nfrom = \"spb\"",
            "from must be",
        ),
        (
            "[swarm]\nepisodes = 1\nepisode_ms = [1, 2]\nnodes = [\"order\"]\nkinds = [\"flood\"]",
            "unknown swarm kind",
        ),
        (
            "[topology]\nclient_racks = { analytics = \"spb\" }",
            "must be \"msk\" or \"nsk\"",
        ),
    ];
    for (extra, reason) in refused {
        let err = with(extra).expect_err(extra).to_string();
        assert!(err.contains(reason), "{extra:?}: {err}");
    }
}

#[test]
fn scenario_settings_override_the_seed_defaults() {
    let s = with(
        "checkers = [\"money\"]\n[kafka]\nmin_insync_replicas = 1\ncross_region_latency_ms = 80\n\
         [client]\nacks = \"1\"\ndelivery_timeout_ms = 700\n\
         [topology]\nclient_racks = { analytics = \"nsk\" }",
    )
    .expect("valid");
    let kafka = s.kafka.apply(sim::kafka::KafkaModelConfig::seed_default());
    assert_eq!(kafka.min_insync_replicas, 1);
    assert_eq!(kafka.cross_region_latency_ms, 80);
    assert!(!kafka.unclean_leader_election, "untouched settings stay");
    let producer = s.client.apply(platform::ports::ProducerConfig::default());
    assert_eq!(producer.acks, platform::ports::Acks::Leader);
    assert_eq!(
        producer.delivery_timeout,
        std::time::Duration::from_millis(700)
    );
    assert!(producer.enable_idempotence);
    assert_eq!(s.topology.client_racks["analytics"], "nsk");
    assert_eq!(s.checkers, Some(vec!["money".to_owned()]));
}

#[test]
fn the_format_example_in_fault_scenarios_readme_parses() {
    let readme = include_str!("../../../fault-scenarios/README.md");
    let example = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in fault-scenarios/README.md");
    let s = sim::scenario::parse(example).expect("the documented example is valid");
    assert_eq!(s.catches, ["min-insync-replicas-1"]);
    assert_eq!(s.faults.len(), 3);
    assert!(s.swarm.is_some());
}

#[test]
fn overlapping_crash_episodes_on_one_node_leave_it_running_after_heal() {
    // Two crash episodes of the order service overlap (as swarm draws them): it is killed
    // twice, restarted while dead and restarted again while running; the heal phase then
    // must not find it gone.
    let s = with(
        "[workload]\norders = 10\ngap_ms = 300\n\
         [[faults]]\nat_ms = [500, 500]\naction = \"kill\"\nnode = \"order\"\n\
         [[faults]]\nat_ms = [700, 700]\naction = \"kill\"\nnode = \"order\"\n\
         [[faults]]\nat_ms = [1500, 1500]\naction = \"restart\"\nnode = \"order\"\n\
         [[faults]]\nat_ms = [2500, 2500]\naction = \"restart\"\nnode = \"order\"\n\
         [[faults]]\nat_ms = [2700, 2700]\naction = \"kill\"\nnode = \"payment\"\n\
         [[faults]]\nat_ms = [2900, 2900]\naction = \"kill\"\nnode = \"payment\"",
    )
    .expect("valid");
    let s = sim::scenario::Scenario {
        fault_phase_s: 5,
        heal_phase_s_max: 120,
        ..s
    };
    let r = sim::runner::run_seed(&s, platform::Mutants::default(), 1);
    assert!(r.outcome.orders > 0, "the workload placed no order");
    assert_eq!(r.outcome.violations, Vec::new());
}

#[test]
fn scenario_files_on_disk_load_like_the_embedded_ones_and_a_mistake_names_the_file() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fault-scenarios");
    let loaded = scenario::from_path(&folder).expect("the scenario folder loads");
    let mut names: Vec<String> = loaded.iter().map(|s| s.name.clone()).collect();
    let mut embedded: Vec<String> = scenario::embedded().into_iter().map(|s| s.name).collect();
    names.sort();
    embedded.sort();
    assert_eq!(names, embedded, "every file of the folder, and only those");
    let one = scenario::from_path(&folder.join("happy-path.toml")).expect("one file loads");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "happy-path");

    let dir = std::env::temp_dir().join(format!("sim-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("broken.toml");
    let text = "name = \"broken\"\ndescription = \"\"\nfault_phase_s = 1\nheal_phase_s_max = 1\n\
                catches = [\"nope\"]\n";
    std::fs::write(&bad, text).expect("write");
    let e = scenario::from_path(&bad).expect_err("a mistake is refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("broken.toml") && text.contains("unknown mutant"),
        "{text}"
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("temp dir");
    assert!(
        scenario::from_path(&empty).is_err(),
        "an empty folder is refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_burst_beyond_capacity_is_shed_and_what_is_accepted_ends() {
    let s = sim::scenario::by_name("order-burst").expect("scenario");
    let r = sim::runner::run_seed(&s, platform::Mutants::default(), 1);
    assert!(
        r.outcome.violations.is_empty(),
        "{:?}",
        r.outcome.violations
    );
    assert!(r.outcome.refused > 0, "the burst was not shed at all");
    assert!(r.outcome.orders > 0, "nothing was accepted");
    assert_eq!(
        r.outcome.orders,
        r.outcome.delivered + r.outcome.cancelled,
        "an accepted order did not end"
    );
}

#[test]
fn live_sessions_resume_across_instances_through_redis_faults_and_receive_every_update() {
    let s = scenario::by_name("notification-fanout-faults").expect("scenario");
    let run = sim::runner::run_seed(&s, platform::Mutants::default(), 1);
    assert!(
        run.outcome.violations.is_empty(),
        "{:?}",
        run.outcome.violations
    );
    let [updates, received, sessions, instances] =
        counted(&run.outcome.trace, "update(s) in feeds")[..]
    else {
        panic!("four counts");
    };
    assert!(updates >= 100, "{updates} updates");
    assert_eq!(received, updates, "each update received once");
    assert!(
        sessions >= 21,
        "{sessions} sessions: clients must drop and resume often"
    );
    assert_eq!(instances, 2, "sessions on both notification instances");
}
