//! The hint bus conformance suite against real Redis, and against the in-process bus that
//! tests and one-process deployments use.

use adapters::RedisHints;
use platform::ports::{Hints, LocalHints};

use crate::support::{redis_url, unique};

#[tokio::test]
async fn redis_passes_the_hint_bus_suite() {
    let bus = RedisHints::new(&redis_url()).expect("REDIS_URL");
    conformance::hints::all(&bus, &unique("hints")).await;
}

#[tokio::test]
async fn the_in_process_bus_passes_the_hint_bus_suite() {
    conformance::hints::all(&LocalHints::default(), "local").await;
}

#[tokio::test]
async fn redis_down_is_unavailable_not_a_hang() {
    // Port 1 on loopback: nothing listens there.
    let bus = RedisHints::new("redis://127.0.0.1:1").expect("a valid URL");
    let e = bus.publish("c", "m").await.expect_err("nobody listens");
    assert!(
        matches!(e, platform::ports::HintsError::Unavailable(_)),
        "{e}"
    );
    assert!(bus.subscribe("c").await.is_err());
    assert!(RedisHints::new("not a url").is_err());
}

/// Two notification instances on one Redis: an update committed by one reaches a session on
/// the other through a hint, though the session's own position check is minutes away.
#[tokio::test]
async fn an_update_committed_on_one_instance_wakes_a_session_on_another_through_redis() {
    use std::{sync::Arc, time::Duration};

    use notification::{FanOut, Filter, Frame, Limits, NotificationSchema, Session};
    use platform::{ports::Store, store::MemoryStore, Shutdown};

    let (_stop, shutdown) = Shutdown::new();
    let store: Arc<dyn Store<NotificationSchema>> =
        Arc::new(MemoryStore::<NotificationSchema>::default());
    let bus = |_| -> Arc<dyn Hints> { Arc::new(RedisHints::new(&redis_url()).expect("REDIS_URL")) };
    let a = FanOut::start(bus(()), shutdown.clone());
    let b = FanOut::start(bus(()), shutdown.clone());
    let via_a = a.observe(store.clone());
    let recipient = unique("fanout");
    let limits = Limits {
        position_check: Duration::from_secs(600),
        keep_alive: Duration::from_secs(600),
        ..Limits::default()
    };
    let mut on_b = Session::open(
        store.clone(),
        &b.changes,
        &recipient,
        Some(notification::Position::parse("0:0").expect("position")),
        Filter::default(),
        limits,
        shutdown.clone(),
    );
    // Until B's subscription is up, a hint may find nobody: commit again (bounded) until one
    // wakes the session; it then gets every update so far, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut committed = 0i64;
    loop {
        let tx = notification::append(&*via_a, &recipient, "notice", "", "{}".into())
            .await
            .expect("append");
        via_a.commit(tx).await.expect("commit");
        committed += 1;
        if let Ok(frame) = tokio::time::timeout(Duration::from_secs(1), on_b.next()).await {
            match frame {
                Some(Frame::Update { update, .. }) => assert_eq!(update.seq, 1),
                other => panic!("expected the first update, got {other:?}"),
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no hint reached B within 20 s"
        );
    }
    for want in 2..=committed {
        match on_b.next().await {
            Some(Frame::Update { update, .. }) => assert_eq!(update.seq, want),
            other => panic!("expected update {want}, got {other:?}"),
        }
    }
    // Now that B listens, one more commit on A reaches it at once.
    let tx = notification::append(&*via_a, &recipient, "notice", "", "{}".into())
        .await
        .expect("append");
    via_a.commit(tx).await.expect("commit");
    let next = tokio::time::timeout(Duration::from_secs(5), on_b.next())
        .await
        .expect("a hint within 5 s");
    assert!(
        matches!(next, Some(Frame::Update { ref update, .. }) if update.seq == committed + 1),
        "{next:?}"
    );
}
