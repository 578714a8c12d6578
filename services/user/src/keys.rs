//! The JWT signing key set, kept in the user store so every instance signs with the same
//! newest key and a restart keeps the keys tokens were signed with.
//!
//! An instance that finds no key, or a newest key older than the rotation period, adds one.
//! The new key's id is the rotation period's number (`k<period>`), so instances that rotate at
//! once race for one row: the loser's insert conflicts and it reads the winner's key. Every
//! instance reloads the set every [`RELOAD`]; the published set is the newest
//! [`PUBLISHED_MAX`] keys, so a token signed just before a rotation verifies until it
//! expires (rotation periods are far longer than an access token's life).

use std::{sync::RwLock, time::Duration};

use auth::{PublicKey, SigningKey};
use platform::{
    ports::{Store, StoreError, Tx},
    Shutdown,
};

use crate::store::{KeyRow, UserAnswer, UserQuery, UserSchema, UserWrite};

/// How often every instance re-reads the key set (and rotates when due).
pub const RELOAD: Duration = Duration::from_secs(60);
/// Keys published for verification, newest first.
pub const PUBLISHED_MAX: usize = 3;

/// This instance's copy of the key set, newest first (empty until the first load).
#[derive(Default)]
pub struct Keys {
    keys: RwLock<Vec<SigningKey>>,
}

impl Keys {
    /// The key new tokens are signed with.
    pub fn current(&self) -> Option<SigningKey> {
        self.keys.read().ok().and_then(|k| k.first().cloned())
    }

    /// The public halves of the published keys.
    pub fn published(&self) -> Vec<PublicKey> {
        self.keys
            .read()
            .map(|k| {
                k.iter()
                    .take(PUBLISHED_MAX)
                    .map(SigningKey::public)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads the set, adds a key when none is younger than `rotate_after`, and keeps the
    /// result.
    pub async fn load(
        &self,
        store: &dyn Store<UserSchema>,
        rotate_after: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut rows = read(store).await?;
        let period_ms = i64::try_from(rotate_after.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let stale = rows
            .first()
            .is_none_or(|k| k.created_ms + period_ms <= now_ms);
        if stale {
            let seed = [
                platform::ids::random_u128().to_le_bytes(),
                platform::ids::random_u128().to_le_bytes(),
            ]
            .concat();
            let key = SigningKey::from_seed(
                &format!("k{}", now_ms / period_ms),
                seed.try_into().unwrap_or([0; 32]),
                now_ms,
            );
            let row = KeyRow {
                kid: key.kid.clone(),
                seed: key.seed_b64(),
                created_ms: now_ms,
            };
            match store
                .commit(Tx::new().write(UserWrite::InsertKey(row)))
                .await
            {
                Ok(()) => tracing::info!(kid = %key.kid, "signing key added"),
                // Another instance added this period's key first; read it below.
                Err(StoreError::Conflict { .. }) => {}
                // The insert may have happened; the next reload tells.
                Err(e) => return Err(e),
            }
            rows = read(store).await?;
        }
        let keys = rows
            .iter()
            .filter_map(
                |r| match SigningKey::from_stored(&r.kid, &r.seed, r.created_ms) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::error!(kid = %r.kid, error = %e, "unusable signing key skipped");
                        None
                    }
                },
            )
            .collect();
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        Ok(())
    }

    /// Reloads the set every [`RELOAD`] (sooner while it has never loaded) until `shutdown`.
    pub async fn keep_loaded(
        &self,
        store: &dyn Store<UserSchema>,
        rotate_after: Duration,
        shutdown: Shutdown,
    ) {
        while !shutdown.is_requested() {
            let wait = match self.load(store, rotate_after, crate::now_ms()).await {
                Ok(()) => RELOAD,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load the signing keys; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn read(store: &dyn Store<UserSchema>) -> Result<Vec<KeyRow>, StoreError> {
    match store.query(UserQuery::Keys).await? {
        UserAnswer::Keys(rows) => Ok(rows),
        other => Err(StoreError::Fatal(format!("keys query answered {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use platform::store::MemoryStore;

    use super::*;

    const DAY_MS: i64 = 24 * 3600 * 1000;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn the_first_load_adds_a_key_and_a_due_rotation_adds_the_next_newest_first() {
        let store = MemoryStore::<UserSchema>::default();
        let period = Duration::from_secs(30 * 24 * 3600);
        let keys = Keys::default();
        block_on(async {
            keys.load(&store, period, 100 * DAY_MS).await.expect("load");
            let first = keys.current().expect("a key");
            // Not due yet: the same key.
            keys.load(&store, period, 110 * DAY_MS).await.expect("load");
            assert_eq!(keys.current().map(|k| k.kid), Some(first.kid.clone()));
            // Due: a new key signs, the old one is still published for verification.
            keys.load(&store, period, 131 * DAY_MS).await.expect("load");
            let second = keys.current().expect("a key");
            assert_ne!(second.kid, first.kid);
            let published: Vec<String> = keys.published().into_iter().map(|k| k.kid).collect();
            assert_eq!(published, [second.kid.clone(), first.kid.clone()]);
            // Tokens of the old key still find it in the published set.
            let set = auth::KeySet::new(&keys.published()).expect("set");
            assert!(set.has(&first.kid) && set.has(&second.kid));
        });
    }

    #[test]
    fn instances_rotating_at_once_agree_on_one_key() {
        let store = MemoryStore::<UserSchema>::default();
        let period = Duration::from_secs(3600);
        let (a, b) = (Keys::default(), Keys::default());
        block_on(async {
            a.load(&store, period, 10 * DAY_MS).await.expect("a");
            b.load(&store, period, 10 * DAY_MS + 5).await.expect("b");
            assert_eq!(a.current().map(|k| k.kid), b.current().map(|k| k.kid));
            let UserAnswer::Keys(rows) = store.query(UserQuery::Keys).await.expect("keys") else {
                panic!("keys")
            };
            assert_eq!(rows.len(), 1, "one key per rotation period");
        });
    }
}
