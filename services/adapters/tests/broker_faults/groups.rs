//! A consumer group rebalances after a member dies (SIGKILL of its process, no LeaveGroup)
//! and no record is skipped.

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
