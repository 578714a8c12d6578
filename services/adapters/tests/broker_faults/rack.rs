//! A consumer is served by a broker of its own rack: in rack nsk by broker 3 also for the
//! partitions another broker leads (follower fetching through the cluster's
//! `RackAwareReplicaSelector`); the evidence is librdkafka's statistics.

use conformance::broker_faults as suite;

use crate::{faults::RealFaults, support::exclusive};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_is_served_by_a_broker_in_its_own_rack() {
    let x = exclusive("a_consumer_is_served_by_a_broker_in_its_own_rack").await;
    let faults = RealFaults::new(&x).await;
    suite::a_consumer_is_served_by_a_broker_in_its_own_rack(faults.log(), &faults).await;
    faults.delete_topics().await;
}
