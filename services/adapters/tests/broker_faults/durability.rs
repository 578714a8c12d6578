//! Acknowledged writes survive a broker crash; idempotent retries across a leader crash
//! neither duplicate nor reorder.

use conformance::broker_faults as suite;

use crate::{faults::RealFaults, support::exclusive};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_loss_of_any_one_broker() {
    let x = exclusive("acknowledged_writes_survive_the_loss_of_any_one_broker").await;
    let faults = RealFaults::new(&x).await;
    suite::acknowledged_writes_survive_the_loss_of_any_one_broker(faults.log(), &faults).await;
    faults.delete_topics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill() {
    let x = exclusive("idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill").await;
    let faults = RealFaults::new(&x).await;
    suite::idempotent_retries_do_not_duplicate_or_reorder_across_a_leader_kill(
        faults.log(),
        &faults,
    )
    .await;
    faults.delete_topics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back() {
    let x = exclusive(
        "a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back",
    )
    .await;
    let faults = RealFaults::new(&x).await;
    suite::a_record_only_the_leader_holds_stays_above_the_high_watermark_until_the_isr_is_back(
        faults.log(),
        &faults,
    )
    .await;
    faults.delete_topics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_leads_the_partitions_it_is_preferred_for_again() {
    let x = exclusive("a_restarted_broker_leads_the_partitions_it_is_preferred_for_again").await;
    let faults = RealFaults::new(&x).await;
    suite::a_restarted_broker_leads_the_partitions_it_is_preferred_for_again(faults.log(), &faults)
        .await;
    faults.delete_topics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies() {
    let x =
        exclusive("a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies")
            .await;
    let faults = RealFaults::new(&x).await;
    suite::a_follower_that_left_the_isr_under_min_insync_leads_when_the_last_member_dies(
        faults.log(),
        &faults,
    )
    .await;
    faults.delete_topics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken() {
    let x = exclusive(
        "after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken",
    )
    .await;
    let faults = RealFaults::new(&x).await;
    suite::after_an_unclean_election_consumers_read_the_new_records_and_the_old_producer_is_broken(
        faults.log(),
        &faults,
    )
    .await;
    faults.delete_topics().await;
}
