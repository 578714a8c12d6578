//! Change notifications that feed status streams (`WatchPayment`, `WatchShipment`, …) instead
//! of a store poll per open stream.
//!
//! Code that commits a change to an entity calls [`Changes::publish`] with its key after the
//! commit; a stream subscribes to its key **before** reading the current state
//! ([`Changes::subscribe`]), so no change between the read and the wait is missed, and
//! re-reads only when woken. Changes committed by another instance of the service do not
//! reach this process: streams also re-read every [`SAFETY_POLL`], which bounds how late they
//! can be (a cost of one read per stream per safety poll instead of five a second).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::Notify;

/// How often a stream re-reads even when nothing woke it (changes made by another instance).
pub const SAFETY_POLL: Duration = Duration::from_secs(2);

/// One watched key: how often it changed, who waits, and how many subscriptions use it.
/// (Not a `watch` channel: its waiters pick a notifier with tokio's unseeded RNG, which the
/// simulation must not touch; `Notify` wakes its waiters in order.)
#[derive(Debug, Default)]
struct Key {
    changes: AtomicU64,
    notify: Notify,
}

/// Per watched key: its state and how many subscriptions use it.
type Watched = BTreeMap<String, (Arc<Key>, usize)>;

/// The in-process hub: one watch channel per key with subscribers.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Removed with the last subscription, so the map holds only keys somebody watches.
    keys: Arc<Mutex<Watched>>,
}

impl Changes {
    /// Tells the subscribers of `key` that it changed (nothing if nobody watches it).
    pub fn publish(&self, key: &str) {
        if let Ok(keys) = self.keys.lock() {
            if let Some((k, _)) = keys.get(key) {
                k.changes.fetch_add(1, Ordering::SeqCst);
                k.notify.notify_waiters();
            }
        }
    }

    /// Starts watching `key`: every change published from now on wakes the subscription.
    pub fn subscribe(&self, key: &str) -> Subscription {
        let watched = match self.keys.lock() {
            Ok(mut keys) => {
                let entry = keys.entry(key.to_owned()).or_default();
                entry.1 += 1;
                let seen = entry.0.changes.load(Ordering::SeqCst);
                Some((entry.0.clone(), seen))
            }
            Err(_) => None,
        };
        Subscription {
            hub: self.clone(),
            key: key.to_owned(),
            watched,
        }
    }

    /// Wakes every subscription (after hints from elsewhere may have been missed: each
    /// subscriber re-reads its state).
    pub fn publish_all(&self) {
        if let Ok(keys) = self.keys.lock() {
            for (k, _) in keys.values() {
                k.changes.fetch_add(1, Ordering::SeqCst);
                k.notify.notify_waiters();
            }
        }
    }

    /// How many keys are watched now (for tests).
    pub fn watched_keys(&self) -> usize {
        self.keys.lock().map_or(0, |k| k.len())
    }
}

/// A subscription to one key's changes; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    hub: Changes,
    key: String,
    /// The key's state and the change count this subscription has seen; `None` only if the
    /// hub's lock was poisoned (the stream then lives on safety polls).
    watched: Option<(Arc<Key>, u64)>,
}

impl Subscription {
    /// Waits until the key changes or `SAFETY_POLL` passes, whichever comes first.
    pub async fn next_change(&mut self) {
        self.next_change_within(SAFETY_POLL).await
    }

    /// Waits until the key changes or `poll` passes, whichever comes first.
    pub async fn next_change_within(&mut self, poll: Duration) {
        let Some((key, seen)) = self.watched.as_mut() else {
            return tokio::time::sleep(poll).await;
        };
        let notified = key.notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a publish between the two is not missed.
        notified.as_mut().enable();
        let now = key.changes.load(Ordering::SeqCst);
        if now != *seen {
            *seen = now;
            return;
        }
        tokio::select! {
            biased;
            _ = notified => {}
            _ = tokio::time::sleep(poll) => {}
        }
        *seen = key.changes.load(Ordering::SeqCst);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.hub.keys.lock() {
            if let Some(entry) = keys.get_mut(&self.key) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    keys.remove(&self.key);
                }
            }
        }
    }
}

/// A status stream over one entity: yields `first` (read after `subscription` was taken),
/// then every view `read` returns that differs from the last one yielded, re-reading when the
/// subscription wakes; ends after a view `is_final` accepts, after an error (yielded), or
/// when `duration_max` has passed (the client re-opens it).
pub fn status_stream<V, E, R, Fut>(
    subscription: Subscription,
    first: V,
    read: R,
    is_final: fn(&V) -> bool,
    duration_max: Duration,
) -> futures::stream::BoxStream<'static, Result<V, E>>
where
    V: PartialEq + Clone + Send + 'static,
    E: Send + 'static,
    R: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<V, E>> + Send,
{
    struct State<V, R> {
        sub: Subscription,
        read: R,
        last: Option<V>,
        pending: Option<V>,
        started: tokio::time::Instant,
        ended: bool,
    }
    let state = State {
        sub: subscription,
        read,
        last: None,
        pending: Some(first),
        started: tokio::time::Instant::now(),
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, move |mut st| async move {
        if st.ended || st.last.as_ref().is_some_and(is_final) {
            return None;
        }
        if let Some(v) = st.pending.take() {
            st.last = Some(v.clone());
            return Some((Ok(v), st));
        }
        loop {
            let left = duration_max.saturating_sub(st.started.elapsed());
            if left.is_zero() {
                return None;
            }
            tokio::select! {
                biased;
                _ = st.sub.next_change() => {}
                _ = tokio::time::sleep(left) => return None,
            }
            match (st.read)().await {
                Ok(v) if st.last.as_ref() != Some(&v) => {
                    st.last = Some(v.clone());
                    return Some((Ok(v), st));
                }
                Ok(_) => continue,
                Err(e) => {
                    st.ended = true;
                    return Some((Err(e), st));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_published_after_subscribing_wakes_at_once_and_nothing_else_does() {
        let hub = Changes::default();
        let mut sub = hub.subscribe("order-1");
        hub.publish("order-2");
        hub.publish("order-1");
        tokio::time::timeout(SAFETY_POLL / 2, sub.next_change())
            .await
            .expect("the published change must wake the subscription before the safety poll");
        let quiet = tokio::time::timeout(Duration::from_millis(100), sub.next_change()).await;
        assert!(
            quiet.is_err(),
            "with no new change (only another key's) the subscription must keep waiting"
        );
    }

    #[tokio::test]
    async fn a_status_stream_yields_each_change_once_and_ends_at_a_final_view() {
        use futures::StreamExt;
        let hub = Changes::default();
        let value = Arc::new(Mutex::new(1u32));
        let sub = hub.subscribe("p");
        let v = value.clone();
        let mut stream = status_stream::<u32, (), _, _>(
            sub,
            1,
            move || {
                let v = v.clone();
                async move { Ok(v.lock().map(|g| *g).unwrap_or(0)) }
            },
            |v| *v >= 3,
            Duration::from_secs(60),
        );
        assert_eq!(stream.next().await, Some(Ok(1)));
        for next in [2, 3] {
            if let Ok(mut g) = value.lock() {
                *g = next;
            }
            hub.publish("p");
            let got = tokio::time::timeout(SAFETY_POLL / 2, stream.next()).await;
            assert_eq!(
                got,
                Ok(Some(Ok(next))),
                "a published change is streamed at once"
            );
        }
        assert_eq!(
            stream.next().await,
            None,
            "the stream ends after a final view"
        );
        assert_eq!(hub.watched_keys(), 0, "an ended stream unsubscribes");
    }

    #[tokio::test]
    async fn the_last_subscription_dropped_forgets_the_key() {
        let hub = Changes::default();
        let a = hub.subscribe("k");
        let b = hub.subscribe("k");
        assert_eq!(hub.watched_keys(), 1);
        drop(a);
        assert_eq!(hub.watched_keys(), 1, "b still watches k");
        drop(b);
        assert_eq!(hub.watched_keys(), 0);
        hub.publish("k");
    }
}
