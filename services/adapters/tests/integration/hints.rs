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
