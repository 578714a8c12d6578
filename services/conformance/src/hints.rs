//! The hint bus port ([`platform::ports::Hints`]): Redis PUB/SUB's promise. Run against real
//! Redis, the simulation's Redis model and [`platform::ports::LocalHints`].
//!
//! Every check takes a fresh channel prefix (runs share a server). No check waits for
//! something *not* to arrive: absence is shown by a later marker arriving first.

use std::time::Duration;

use futures::StreamExt;
use platform::ports::{HintStream, Hints};

/// Bound on waiting for one message that must come.
const ARRIVAL_MAX: Duration = Duration::from_secs(10);

async fn next(stream: &mut HintStream, what: &str) -> String {
    match tokio::time::timeout(ARRIVAL_MAX, stream.next()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing arrived within {ARRIVAL_MAX:?}"),
    }
}

/// A subscriber gets what is published after it subscribed, in publish order, and nothing
/// published before (there is no history).
pub async fn a_subscriber_gets_later_messages_in_order_and_no_history(
    bus: &dyn Hints,
    prefix: &str,
) {
    let channel = format!("{prefix}:order");
    bus.publish(&channel, "before").await.expect("publish");
    let mut s = bus.subscribe(&channel).await.expect("subscribe");
    for i in 0..50 {
        bus.publish(&channel, &format!("m{i}"))
            .await
            .expect("publish");
    }
    for i in 0..50 {
        assert_eq!(next(&mut s, "in order").await, format!("m{i}"));
    }
}

/// Every subscriber of a channel gets each message; a channel's messages reach no other
/// channel; `publish` answers how many subscribers it reached.
pub async fn each_subscriber_of_a_channel_gets_each_message_and_no_other_channels(
    bus: &dyn Hints,
    prefix: &str,
) {
    let a = format!("{prefix}:a");
    let b = format!("{prefix}:b");
    let mut a1 = bus.subscribe(&a).await.expect("subscribe a1");
    let mut a2 = bus.subscribe(&a).await.expect("subscribe a2");
    let mut b1 = bus.subscribe(&b).await.expect("subscribe b1");
    assert_eq!(bus.publish(&b, "for b").await.expect("publish"), 1);
    assert_eq!(bus.publish(&a, "for a").await.expect("publish"), 2);
    assert_eq!(bus.publish(&b, "end of b").await.expect("publish"), 1);
    assert_eq!(
        bus.publish(&format!("{prefix}:nobody"), "lost")
            .await
            .expect("publish"),
        0,
        "a channel without subscribers reaches nobody"
    );
    assert_eq!(next(&mut a1, "a1").await, "for a");
    assert_eq!(next(&mut a2, "a2").await, "for a");
    assert_eq!(next(&mut b1, "b1").await, "for b", "nothing of a's on b");
    assert_eq!(next(&mut b1, "b1").await, "end of b");
}

/// A dropped subscription stops counting as a receiver, and the others keep receiving.
pub async fn a_dropped_subscription_stops_receiving(bus: &dyn Hints, prefix: &str) {
    let channel = format!("{prefix}:drop");
    let gone = bus.subscribe(&channel).await.expect("subscribe");
    let mut stays = bus.subscribe(&channel).await.expect("subscribe");
    drop(gone);
    // Redis learns of the closed connection asynchronously: publish until it has.
    let deadline = tokio::time::Instant::now() + ARRIVAL_MAX;
    let mut sent = 0;
    loop {
        sent += 1;
        if bus.publish(&channel, "ping").await.expect("publish") == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped subscription still counts after {ARRIVAL_MAX:?}"
        );
        tokio::task::yield_now().await;
    }
    for _ in 0..sent {
        assert_eq!(next(&mut stays, "the remaining subscriber").await, "ping");
    }
}

/// Every check above.
pub async fn all(bus: &dyn Hints, prefix: &str) {
    a_subscriber_gets_later_messages_in_order_and_no_history(bus, prefix).await;
    each_subscriber_of_a_channel_gets_each_message_and_no_other_channels(bus, prefix).await;
    a_dropped_subscription_stops_receiving(bus, prefix).await;
}
