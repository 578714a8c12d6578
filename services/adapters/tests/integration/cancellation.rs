//! sqlx's `Pool::begin` is not cancel-safe on Postgres: a future dropped while `BEGIN` is in
//! flight returns its connection to the pool inside an open transaction. The first test shows
//! the upstream bug on plain sqlx (if it ever fails, sqlx fixed it and the guard in `PgStore`
//! may go); the others show that `PgStore` is immune: a cancelled commit runs to its end and
//! no connection goes back to the pool inside a transaction.

use std::time::Duration;

use adapters::{PgStore, PgStoreConfig, SchemaName};
use futures::FutureExt;
use platform::{
    ports::{Store, StoreError, Tx},
    store::kv::{KvSchema, KvTx},
};
use sqlx::{postgres::PgPoolOptions, Acquire, PgConnection};

use crate::support::{self, get};

/// Whether `conn` is inside a transaction block: `SAVEPOINT` works only there.
async fn in_transaction(conn: &mut PgConnection) -> bool {
    let inside = sqlx::query("SAVEPOINT probe")
        .execute(&mut *conn)
        .await
        .is_ok();
    if inside {
        sqlx::query("ROLLBACK")
            .execute(&mut *conn)
            .await
            .expect("rollback the leaked transaction");
    }
    inside
}

#[tokio::test]
async fn plain_sqlx_returns_a_connection_whose_begin_was_cancelled_inside_a_transaction() {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&support::database_url())
        .await
        .expect("PostgreSQL reachable");
    let mut conn = pool.acquire().await.expect("a connection");
    {
        // A slow statement ahead of BEGIN (itself cancelled, which sqlx handles by draining
        // its answer later) makes sure BEGIN cannot be answered within one poll.
        let slow = sqlx::query("SELECT pg_sleep(0.2)").execute(&mut *conn);
        assert!(
            slow.now_or_never().is_none(),
            "the slow statement is in flight"
        );
        let begin = conn.begin();
        assert!(
            begin.now_or_never().is_none(),
            "BEGIN must still wait for the server after one poll"
        );
        // The caller's deadline fires here: the begin future is dropped.
    }
    drop(conn);
    let mut next = pool.acquire().await.expect("the same connection again");
    assert!(
        in_transaction(&mut next).await,
        "the next borrower runs inside the cancelled caller's transaction (the upstream bug)"
    );
    drop(next);
    pool.close().await;
}

async fn one_connection_store() -> PgStore<KvSchema> {
    let schema = SchemaName::parse(&support::unique("it")).expect("valid");
    let config = PgStoreConfig {
        pool_connections_max: 1,
        ..PgStoreConfig::default()
    };
    PgStore::<KvSchema>::connect_with(&support::database_url(), &schema, config)
        .await
        .expect("PostgreSQL reachable")
}

/// Awaits `check` becoming true, re-checking every 10 ms for at most 5 s.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_cancelled_commit_runs_to_its_end_and_leaves_no_open_transaction_in_the_pool() {
    let store = one_connection_store().await;
    for i in 0..20 {
        let key = format!("k-{i}");
        let commit = store.commit(Tx::new().put("t", &key, serde_json::json!(i), false));
        // Cancelled after its first poll, as a gRPC deadline cancels a handler.
        let _ = commit.now_or_never();
        eventually("the cancelled commit lands", || async {
            store.query(get("t", &key)).await.ok().flatten().is_some()
        })
        .await;
        let mut conn = store.pool().acquire().await.expect("the pool's connection");
        assert!(
            !in_transaction(&mut conn).await,
            "round {i}: the connection went back to the pool inside a transaction"
        );
    }
    support::drop_schema(store.schema()).await;
}

#[tokio::test]
async fn a_refused_commit_rolls_back_and_the_next_caller_starts_clean() {
    let store = one_connection_store().await;
    store
        .commit(Tx::new().put("t", "k", serde_json::json!(1), false))
        .await
        .expect("first commit");
    let refused = store
        .commit(
            Tx::new()
                .expect("t", "k", Some(7))
                .put("t", "k", serde_json::json!(2), false),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })));
    let mut conn = store.pool().acquire().await.expect("the pool's connection");
    assert!(!in_transaction(&mut conn).await);
    drop(conn);
    support::drop_schema(store.schema()).await;
}
