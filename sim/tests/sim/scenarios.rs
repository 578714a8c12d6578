use crate::support::scenario_passes;

#[test]
fn happy_path_delivers_or_cancels_every_order_and_publishes_every_change() {
    scenario_passes("happy-path");
}

#[test]
fn order_service_crash_mid_saga_resumes_every_saga_without_double_charges() {
    scenario_passes("order-service-crash-mid-saga");
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
fn psp_duplicate_callbacks_settle_each_payment_once() {
    scenario_passes("psp-duplicate-callbacks");
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
fn every_embedded_scenario_parses_and_names_known_mutants() {
    let all = sim::scenario::embedded();
    assert_eq!(all.len(), sim::scenario::EMBEDDED.len());
    assert!(sim::scenario::parse("name = \"x\"\ndescription = \"\"\nfault_phase_s = 1\nheal_phase_s_max = 1\ncatches = [\"nope\"]").is_err());
    assert!(sim::scenario::parse("name = \"x\"\ndescription = \"\"\nfault_phase_s = 1\nheal_phase_s_max = 1\n[[faults]]\nat_ms = [5, 1]\naction = \"heal-network\"").is_err());
}
