//! `PgStore` passes the store conformance suite, each scenario on a fresh schema, and keeps
//! the promises that are its own (schemas, migrations, failures).

use std::time::Duration;

use adapters::{PgStore, PgStoreConfig, SchemaName};
use conformance::store as conformance;
use platform::{
    ports::{Store, StoreError, Tx},
    store::kv::{KvSchema, KvTx},
};

use crate::support::{self, get, FreshStore};

#[tokio::test]
async fn pg_store_passes_the_whole_store_suite_on_one_schema() {
    let db = FreshStore::new().await;
    conformance::run_all(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_counts_versions_from_one() {
    let db = FreshStore::new().await;
    conformance::put_then_get_counts_versions_from_one(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_refuses_a_stale_expectation_and_writes_nothing() {
    let db = FreshStore::new().await;
    conformance::a_stale_expectation_conflicts_and_writes_nothing(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_writes_none_of_a_transaction_with_a_failed_check() {
    let db = FreshStore::new().await;
    conformance::a_failed_check_writes_none_of_the_transaction(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_refuses_a_processed_event_as_duplicate() {
    let db = FreshStore::new().await;
    conformance::a_processed_event_is_refused_as_duplicate_and_writes_nothing(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_returns_outbox_rows_in_commit_order_until_marked_sent() {
    let db = FreshStore::new().await;
    conformance::outbox_rows_come_out_in_commit_order_until_marked_sent(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_lists_active_records_in_key_byte_order() {
    let db = FreshStore::new().await;
    conformance::list_work_returns_the_active_items_of_a_kind_in_key_order(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_lets_exactly_one_of_racing_commits_win() {
    let db = FreshStore::new().await;
    conformance::concurrent_commits_expecting_one_version_let_exactly_one_win(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn reconnecting_to_a_schema_keeps_its_data_and_migrates_nothing_twice() {
    let db = FreshStore::new().await;
    db.store
        .commit(Tx::new().put("t", "k", serde_json::json!(1), true))
        .await
        .expect("commit");
    let again = support::connect(db.store.schema()).await;
    assert_eq!(
        again
            .query(get("t", "k"))
            .await
            .expect("get")
            .map(|v| v.version),
        Some(1),
        "a second store on the same schema must see the first one's data"
    );
    again.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn stores_in_two_schemas_do_not_see_each_other() {
    let a = FreshStore::new().await;
    let b = FreshStore::new().await;
    a.store
        .commit(
            Tx::new()
                .put("t", "k", serde_json::json!("a"), true)
                .consumed("c", "e"),
        )
        .await
        .expect("commit in a");
    assert_eq!(b.store.query(get("t", "k")).await.expect("get"), None);
    b.store
        .commit(Tx::new().consumed("c", "e"))
        .await
        .expect("the same inbox mark in another schema is not a duplicate");
    a.drop_schema().await;
    b.drop_schema().await;
}

#[tokio::test]
async fn a_closed_pool_reports_unavailable_not_fatal() {
    let db = FreshStore::new().await;
    db.store.close().await;
    let result = db.store.query(get("t", "k")).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "a store that cannot reach its database must say Unavailable (retriable), got {result:?}"
    );
    support::drop_schema(db.store.schema()).await;
}

#[tokio::test]
async fn connecting_to_a_database_that_is_not_there_fails_with_the_cause() {
    let schema = SchemaName::parse("never_created").expect("valid");
    let config = PgStoreConfig {
        acquire_timeout: Duration::from_secs(2),
        ..PgStoreConfig::default()
    };
    // Port 1 on loopback: nothing listens there.
    let result = PgStore::<KvSchema>::connect_with(
        "postgres://nobody:nothing@127.0.0.1:1/none",
        &schema,
        config,
    )
    .await;
    let error = result.expect_err("connecting to a closed port must fail");
    let text = support::chain(&error);
    assert!(
        text.contains("never_created"),
        "the error must name the schema: {text}"
    );
}

#[tokio::test]
async fn pg_store_gives_a_claimed_record_one_owner_and_fences_the_old_one() {
    let db = FreshStore::new().await;
    conformance::a_claimed_record_has_one_owner_while_its_liveness_lease_runs_and_fences_the_old_one(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_gives_a_named_lease_one_holder_until_it_expires() {
    let db = FreshStore::new().await;
    conformance::a_named_lease_has_one_holder_until_it_expires(&db.store).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn pg_store_cleans_up_sent_rows_and_marks_after_the_retention() {
    let db = FreshStore::new().await;
    conformance::cleanup_removes_sent_rows_and_marks_after_the_retention_and_keeps_pending_rows(
        &db.store,
    )
    .await;
    db.drop_schema().await;
}
