//! A consumer group rebalances after a member dies (SIGKILL of its process, no LeaveGroup)
//! and no record is skipped; a partition's new owner starts only after its old owner gave it
//! up at a poll (the JoinGroup barrier).

use conformance::broker_faults as suite;

use crate::{faults::RealFaults, support::exclusive};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped() {
    let x = exclusive("a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped").await;
    let faults = RealFaults::new(&x).await;
    suite::a_group_rebalances_after_a_consumer_dies_and_no_record_is_skipped(faults.log(), &faults)
        .await;
    faults.delete_topics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll() {
    let x =
        exclusive("a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll")
            .await;
    let faults = RealFaults::new(&x).await;
    suite::a_partitions_new_owner_starts_only_after_its_old_owner_gave_it_up_at_a_poll(
        faults.log(),
        &faults,
    )
    .await;
    faults.delete_topics().await;
}
