//! The store conformance suite: what service logic may rely on from any store adapter — the
//! platform's outbox, inbox, work claims, leases and cleanup, and the transaction semantics
//! (checks, atomicity, concurrency) — exercised through the kv schema
//! ([`platform::store::kv`]), whose Postgres twin every adapter carries for this purpose.
//!
//! Each scenario is a public async function over `&dyn Store<KvSchema>` that panics, saying what was
//! expected, on the first violation. [`run_all`] runs them in turn; adapters' tests may also
//! call them one by one. Scenarios use their own tables, consumers and event ids, and leave no
//! pending outbox rows behind, so they can share one store — but that store must start empty
//! (a fresh database schema, a new [`platform::store::MemoryStore`]).
//! The reference semantics are [`platform::store::MemoryState::apply`].

use std::time::Duration;

use serde_json::json;

use platform::{
    ports::store::{liveness_lease, Claimed, OutboxMessage, OutboxRow, Store, StoreError, Tx},
    store::kv::{KvQuery, KvSchema, KvTx, KvWrite},
};

/// A row of the kv schema.
type Versioned = platform::ports::store::Versioned<serde_json::Value>;

/// A lease long enough never to run out during a scenario.
const LEASE_LONG: Duration = Duration::from_secs(3_600);

/// How many pending outbox rows a scenario reads when it wants "all of them".
const PENDING_SCAN_ROWS_MAX: usize = 1_000;

/// How many commits race for the same record in the concurrency scenario.
const RACERS: usize = 8;

/// Runs every scenario against `store`, which must start empty.
pub async fn run_all(store: &dyn Store<KvSchema>) {
    put_then_get_counts_versions_from_one(store).await;
    a_stale_expectation_conflicts_and_writes_nothing(store).await;
    a_failed_check_writes_none_of_the_transaction(store).await;
    a_processed_event_is_refused_as_duplicate_and_writes_nothing(store).await;
    outbox_rows_come_out_in_commit_order_until_marked_sent(store).await;
    list_work_returns_the_active_items_of_a_kind_in_key_order(store).await;
    concurrent_commits_expecting_one_version_let_exactly_one_win(store).await;
    a_claimed_record_has_one_owner_while_its_liveness_lease_runs_and_fences_the_old_one(store)
        .await;
    a_named_lease_has_one_holder_until_it_expires(store).await;
    cleanup_removes_sent_rows_and_marks_after_the_retention_and_keeps_pending_rows(store).await;
}

/// `claim_work` hands each active work item of a kind to one owner at a time, by key, at most
/// `limit` new ones per call; the holder keeps its records and tokens while its liveness lease
/// runs; once that lease runs out another owner takes them over with new tokens, a commit
/// fenced by the old claim is refused, and the old owner gets nothing back.
pub async fn a_claimed_record_has_one_owner_while_its_liveness_lease_runs_and_fences_the_old_one(
    store: &dyn Store<KvSchema>,
) {
    const T: &str = "conformance_claims";
    let (a, b) = ("claimer-a", "claimer-b");
    commit_ok(
        store,
        Tx::new()
            .put(T, "b", json!("b"), true)
            .put(T, "a", json!("a"), true)
            .put(T, "c", json!("c"), true)
            .put(T, "done", json!("done"), false),
        "three active records and a finished one",
    )
    .await;
    for owner in [a, b] {
        lease(store, &liveness_lease(owner), owner, LEASE_LONG).await;
    }

    let first = claim(store, T, a, 2).await;
    assert_eq!(
        keys(&first),
        ["a", "b"],
        "the first claim must take the two first active records by key"
    );
    let rest = claim(store, T, b, 10).await;
    assert_eq!(
        keys(&rest),
        ["c"],
        "another owner must get only what nobody holds (not A's, not finished records)"
    );
    let again = claim(store, T, a, 10).await;
    assert_eq!(keys(&again), ["a", "b"], "A keeps what it holds");
    assert_eq!(
        tokens(&again),
        tokens(&first),
        "a kept claim must keep its fencing token"
    );

    let (token_a, token_c) = (first[0].token, rest[0].token);
    commit_ok(
        store,
        Tx::new()
            .expect_claim(T, "a", a, token_a)
            .put(T, "a", json!("a by A"), true),
        "a commit fenced by the claim A holds",
    )
    .await;
    let refused = store
        .commit(
            Tx::new()
                .expect_claim(T, "c", a, token_c)
                .put(T, "c", json!("c by A"), true),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "a commit fenced by a claim another owner holds must conflict, got {refused:?}"
    );
    assert_eq!(
        get(store, T, "c").await.map(|v| v.value),
        Some(json!("c")),
        "the refused commit must write nothing"
    );

    // A's liveness lease runs out at once; B takes a and b over with new tokens.
    lease(store, &liveness_lease(a), a, Duration::ZERO).await;
    let taken = claim(store, T, b, 10).await;
    assert_eq!(
        keys(&taken),
        ["a", "b", "c"],
        "B must take over the claims of an owner whose liveness lease ran out"
    );
    assert!(
        taken[0].token != token_a && taken[1].token != first[1].token,
        "a claim that passes to another owner must get a new token: {taken:?} after {first:?}"
    );
    assert_eq!(
        get(store, T, "a").await.map(|v| v.value),
        Some(json!("a by A")),
        "the takeover keeps the record as stored"
    );
    let fenced = store
        .commit(
            Tx::new()
                .expect_claim(T, "a", a, token_a)
                .put(T, "a", json!("late A"), true),
        )
        .await;
    assert!(
        matches!(fenced, Err(StoreError::Conflict { .. })),
        "the old owner's fenced commit must conflict after the takeover, got {fenced:?}"
    );
    lease(store, &liveness_lease(a), a, LEASE_LONG).await;
    assert!(
        claim(store, T, a, 10).await.is_empty(),
        "the old owner, alive again, must get nothing back while B is alive"
    );

    commit_ok(
        store,
        Tx::new()
            .put(T, "a", json!("a done"), false)
            .put(T, "b", json!("b done"), false)
            .put(T, "c", json!("c done"), false),
        "finish every record",
    )
    .await;
    assert!(
        claim(store, T, b, 10).await.is_empty(),
        "finished records must not be claimed"
    );
}

/// `acquire_lease` gives a named lease to one owner at a time: the holder renews with the same
/// token, others get `None` until it expires, then the next owner gets a new token.
pub async fn a_named_lease_has_one_holder_until_it_expires(store: &dyn Store<KvSchema>) {
    const NAME: &str = "conformance-lease";
    let a = lease(store, NAME, "A", LEASE_LONG).await;
    let Some(token) = a else {
        panic!("a lease nobody holds must be granted");
    };
    assert_eq!(
        lease(store, NAME, "B", LEASE_LONG).await,
        None,
        "a running lease must be refused to another owner"
    );
    assert_eq!(
        lease(store, NAME, "A", LEASE_LONG).await,
        Some(token),
        "the holder renews with the same token"
    );
    assert!(
        lease(store, "conformance-lease-other", "B", LEASE_LONG)
            .await
            .is_some(),
        "leases of other names are independent"
    );
    lease(store, NAME, "A", Duration::ZERO).await;
    let b = lease(store, NAME, "B", LEASE_LONG).await;
    assert!(
        b.is_some_and(|t| t != token),
        "after expiry the next owner must get the lease with a new token, got {b:?} after {token}"
    );
    assert_eq!(
        lease(store, NAME, "A", LEASE_LONG).await,
        None,
        "the old holder must be refused while the new lease runs"
    );
}

/// `cleanup` removes sent outbox rows and inbox marks at least `retention` old, and nothing
/// younger; unsent rows stay whatever their age. A removed mark no longer deduplicates.
pub async fn cleanup_removes_sent_rows_and_marks_after_the_retention_and_keeps_pending_rows(
    store: &dyn Store<KvSchema>,
) {
    let sent = message("cleanup-sent", "k-1");
    let unsent = message("cleanup-unsent", "k-2");
    commit_ok(
        store,
        Tx::new()
            .emit(sent.clone())
            .emit(unsent.clone())
            .consumed("conformance-cleanup", "e-1"),
        "two events and an inbox mark",
    )
    .await;
    let rows = pending(store).await;
    let sent_row = rows
        .iter()
        .find(|r| r.message.event_id == sent.event_id)
        .unwrap_or_else(|| panic!("the committed row must be pending: {rows:?}"))
        .id;
    mark_sent(store, &[sent_row]).await;

    let kept = cleanup(store, LEASE_LONG).await;
    assert_eq!(
        kept,
        platform::ports::Cleaned::default(),
        "nothing is as old as the retention yet"
    );
    let again = store
        .commit(Tx::new().consumed("conformance-cleanup", "e-1"))
        .await;
    assert!(
        matches!(again, Err(StoreError::Duplicate { .. })),
        "a kept mark must still deduplicate, got {again:?}"
    );

    let cleaned = cleanup(store, Duration::ZERO).await;
    assert!(
        cleaned.outbox_rows >= 1 && cleaned.inbox_marks >= 1,
        "a zero retention must remove the sent row and the mark, removed {cleaned:?}"
    );
    let after = pending(store).await;
    assert_eq!(
        messages(&after),
        vec![unsent],
        "the unsent row must stay pending"
    );
    commit_ok(
        store,
        Tx::new().consumed("conformance-cleanup", "e-1"),
        "the event again, its mark cleaned up",
    )
    .await;
    mark_sent(store, &ids(&after)).await;
}

/// A put stores version 1, every later put (checked or blind) bumps it by one, bodies round
/// trip unchanged, and tables are separate key spaces.
pub async fn put_then_get_counts_versions_from_one(store: &dyn Store<KvSchema>) {
    const T: &str = "conformance_versions";
    assert_eq!(
        get(store, T, "k").await,
        None,
        "a key never written must read as absent"
    );

    let body = json!({
        "n": 1,
        "nested": {"list": [1, 2.5, "three", null, true], "empty": {}},
        "text": "snow ❄ and \"quotes\"",
        "big": 9_007_199_254_740_993_u64,
    });
    commit_ok(
        store,
        Tx::new().put(T, "k", body.clone(), false),
        "first put",
    )
    .await;
    assert_eq!(
        get(store, T, "k").await,
        Some(Versioned {
            version: 1,
            value: body
        }),
        "the first put must store version 1 with the body unchanged"
    );

    commit_ok(
        store,
        Tx::new()
            .expect(T, "k", Some(1))
            .put(T, "k", json!({"n": 2}), true),
        "a put expecting the current version",
    )
    .await;
    assert_version(store, T, "k", 2, json!({"n": 2}), "after a checked put").await;

    commit_ok(
        store,
        Tx::new().put(T, "k", json!({"n": 3}), false),
        "a blind put",
    )
    .await;
    assert_version(store, T, "k", 3, json!({"n": 3}), "after a blind put").await;

    commit_ok(
        store,
        Tx::new()
            .put(T, "twice", json!("first"), false)
            .put(T, "twice", json!("second"), false),
        "two puts of one key in one transaction",
    )
    .await;
    assert_version(
        store,
        T,
        "twice",
        2,
        json!("second"),
        "two puts of one key in one transaction bump it twice, the last body wins",
    )
    .await;

    assert_eq!(
        get(store, "conformance_versions_other", "k").await,
        None,
        "the same key in another table is another record"
    );
}

/// A commit whose expectation does not match the stored version (absent, older, newer) fails
/// with `Conflict` naming the record, and the record keeps its version and body.
pub async fn a_stale_expectation_conflicts_and_writes_nothing(store: &dyn Store<KvSchema>) {
    const T: &str = "conformance_conflict";
    commit_ok(
        store,
        Tx::new().put(T, "k", json!("original"), true),
        "setup put",
    )
    .await;

    for (what, expected) in [
        ("expects the record absent", None),
        ("expects an older version", Some(0)),
        ("expects a newer version", Some(2)),
    ] {
        let result = store
            .commit(
                Tx::new()
                    .expect(T, "k", expected)
                    .put(T, "k", json!("overwritten"), false),
            )
            .await;
        assert_eq!(
            result,
            Err(conflict(T, "k")),
            "a commit that {what} (record at version 1) must conflict"
        );
        assert_version(
            store,
            T,
            "k",
            1,
            json!("original"),
            &format!("after a refused commit that {what}"),
        )
        .await;
    }

    let result = store
        .commit(
            Tx::new()
                .expect(T, "missing", Some(1))
                .put(T, "missing", json!("created"), true),
        )
        .await;
    assert_eq!(
        result,
        Err(conflict(T, "missing")),
        "a commit expecting an absent record at version 1 must conflict"
    );
    assert_eq!(
        get(store, T, "missing").await,
        None,
        "a refused commit must not create the record it would have written"
    );
}

/// A transaction with one failed check (or one duplicate inbox mark) writes none of its puts,
/// outbox rows or inbox marks, whatever their order in the transaction.
pub async fn a_failed_check_writes_none_of_the_transaction(store: &dyn Store<KvSchema>) {
    const T: &str = "conformance_atomic";
    const CONSUMER: &str = "conformance-atomic";
    commit_ok(
        store,
        Tx::new().put(T, "anchor", json!("v1"), true),
        "setup put",
    )
    .await;

    let doomed = Tx::new()
        .put(T, "a", json!("a"), true)
        .expect(T, "b", None)
        .expect(T, "anchor", Some(7))
        .put(T, "anchor", json!("v2"), true)
        .put(T, "b", json!("b"), true)
        .emit(message("atomic-1", "k"))
        .consumed(CONSUMER, "atomic-event-1");
    assert_eq!(
        store.commit(doomed).await,
        Err(conflict(T, "anchor")),
        "a transaction whose second check fails must conflict on that record"
    );
    assert_eq!(
        get(store, T, "a").await,
        None,
        "a put of a conflicting transaction was written"
    );
    assert_eq!(
        get(store, T, "b").await,
        None,
        "a put of a conflicting transaction was written"
    );
    assert_version(
        store,
        T,
        "anchor",
        1,
        json!("v1"),
        "after a conflicting transaction",
    )
    .await;
    assert_not_pending(store, "atomic-1", "a conflicting transaction").await;
    commit_ok(
        store,
        Tx::new().consumed(CONSUMER, "atomic-event-1"),
        "the inbox mark of a conflicting transaction must not have been written, so",
    )
    .await;

    let doomed = Tx::new()
        .put(T, "c", json!("c"), true)
        .emit(message("atomic-2", "k"))
        .consumed(CONSUMER, "atomic-event-2")
        .consumed(CONSUMER, "atomic-event-1");
    assert_eq!(
        store.commit(doomed).await,
        Err(duplicate(CONSUMER, "atomic-event-1")),
        "a transaction with an inbox mark already committed must be a duplicate"
    );
    assert_eq!(
        get(store, T, "c").await,
        None,
        "a put of a duplicate transaction was written"
    );
    assert_not_pending(store, "atomic-2", "a duplicate transaction").await;
    commit_ok(
        store,
        Tx::new().consumed(CONSUMER, "atomic-event-2"),
        "the other inbox marks of a duplicate transaction must not have been written, so",
    )
    .await;
}

/// An inbox mark commits once per consumer: again (in a later transaction or twice in one)
/// it is `Duplicate` and the transaction's effect is not written; other consumers may mark
/// the same event.
pub async fn a_processed_event_is_refused_as_duplicate_and_writes_nothing(
    store: &dyn Store<KvSchema>,
) {
    const T: &str = "conformance_inbox";
    const A: &str = "conformance-inbox-a";
    const B: &str = "conformance-inbox-b";
    commit_ok(
        store,
        Tx::new()
            .put(T, "effect", json!(1), false)
            .consumed(A, "evt-1"),
        "the first processing of an event",
    )
    .await;
    assert_eq!(
        store
            .commit(
                Tx::new()
                    .put(T, "effect", json!(2), false)
                    .consumed(A, "evt-1")
            )
            .await,
        Err(duplicate(A, "evt-1")),
        "processing an event again must be a duplicate"
    );
    assert_version(
        store,
        T,
        "effect",
        1,
        json!(1),
        "after a duplicate processing",
    )
    .await;

    commit_ok(
        store,
        Tx::new().consumed(B, "evt-1"),
        "another consumer processing the same event",
    )
    .await;

    assert_eq!(
        store
            .commit(
                Tx::new()
                    .put(T, "twice", json!(1), false)
                    .consumed(A, "evt-2")
                    .consumed(A, "evt-2"),
            )
            .await,
        Err(duplicate(A, "evt-2")),
        "one transaction marking the same event twice must be a duplicate"
    );
    assert_eq!(
        get(store, T, "twice").await,
        None,
        "the put of a transaction marking an event twice was written"
    );
    commit_ok(
        store,
        Tx::new().consumed(A, "evt-2"),
        "marking an event whose double mark was refused",
    )
    .await;

    // The marks can be looked up, per consumer and event.
    for (consumer, event, marked) in [
        (A, "evt-1", true),
        (B, "evt-1", true),
        (A, "evt-2", true),
        (B, "evt-2", false),
        (A, "evt-3", false),
    ] {
        assert_eq!(
            store.consumed(consumer, event).await,
            Ok(marked),
            "{consumer} consumed {event}"
        );
    }
}

/// Committed outbox rows are pending in commit order with ascending ids and unchanged
/// messages; `limit` takes the oldest; marked rows stop being pending (re-marking and unknown
/// ids are harmless); later commits come after.
pub async fn outbox_rows_come_out_in_commit_order_until_marked_sent(store: &dyn Store<KvSchema>) {
    const T: &str = "conformance_outbox";
    let before = pending(store).await;
    assert!(
        before.is_empty(),
        "the outbox scenario needs a store without pending outbox rows, found {before:?}"
    );

    let mut first = message("outbox-1", "order-1");
    first.headers = vec![
        (
            "traceparent".into(),
            "00-0af7651916cd43dd-b7ad6b7169203331-01".into(),
        ),
        ("b".into(), "2".into()),
        ("a".into(), "1".into()),
    ];
    first.payload = json!({"status": "PAID", "amount": {"units": 1250, "currency": "RUB"}});
    let second = message("outbox-2", "order-2");
    let third = message("outbox-3", "order-1");
    let fourth = message("outbox-4", "order-3");
    let committing_from = platform::store::now_ms() as i64;

    commit_ok(
        store,
        Tx::new()
            .put(T, "order-1", json!("PAID"), true)
            .emit(first.clone()),
        "a state change with its event",
    )
    .await;
    commit_ok(
        store,
        Tx::new().emit(second.clone()).emit(third.clone()),
        "a transaction of two events",
    )
    .await;
    commit_ok(store, Tx::new().emit(fourth.clone()), "a single event").await;

    let rows = pending(store).await;
    assert_eq!(
        messages(&rows),
        vec![first, second, third, fourth],
        "pending rows must be every committed message, unchanged, in commit order"
    );
    assert!(
        rows.windows(2).all(|w| w[0].id < w[1].id),
        "pending row ids must ascend: {:?}",
        ids(&rows)
    );
    // Each row knows when it was committed, by the store's clock (the same machine's, or the
    // simulated one), within a few seconds.
    let committed_by = platform::store::now_ms() as i64;
    for r in &rows {
        assert!(
            (committing_from - 5_000..=committed_by + 5_000).contains(&r.created_ms),
            "row {} was stamped {} ms, not while it was committed ({committing_from}..={committed_by})",
            r.id,
            r.created_ms
        );
    }
    let oldest = store
        .outbox_pending(2)
        .await
        .unwrap_or_else(|e| panic!("outbox_pending(2) failed: {e}"));
    assert_eq!(
        oldest,
        rows[..2],
        "outbox_pending(2) must return the two oldest rows"
    );

    mark_sent(store, &ids(&rows[..2])).await;
    assert_eq!(
        pending(store).await,
        rows[2..],
        "rows marked sent must no longer be pending"
    );
    mark_sent(store, &[rows[0].id, rows[2].id]).await;
    assert_eq!(
        pending(store).await,
        rows[3..],
        "marking an already sent row must be harmless"
    );
    mark_sent(store, &[]).await;
    mark_sent(store, &[rows[3].id, rows[3].id + 1_000_000]).await;
    assert_eq!(
        pending(store).await,
        vec![],
        "marking every row (and an unknown id) must leave nothing pending"
    );

    let fifth = message("outbox-5", "order-1");
    commit_ok(
        store,
        Tx::new().emit(fifth.clone()),
        "an event after the others",
    )
    .await;
    let rows_after = pending(store).await;
    assert_eq!(
        messages(&rows_after),
        vec![fifth],
        "only the new row must be pending"
    );
    assert!(
        rows_after[0].id > rows[3].id,
        "a row committed later must get a larger id ({} after {})",
        rows_after[0].id,
        rows[3].id
    );
    mark_sent(store, &ids(&rows_after)).await;
}

/// `list_work` returns the active work items of one kind, ordered by key bytes (`"B" < "a"`),
/// at most `limit`; a write that finishes an item removes it, one that starts it brings it
/// back; kinds are separate.
pub async fn list_work_returns_the_active_items_of_a_kind_in_key_order(
    store: &dyn Store<KvSchema>,
) {
    const T: &str = "conformance_active";
    const OTHER: &str = "conformance_active_other";
    commit_ok(
        store,
        Tx::new()
            .put(T, "b", json!("b"), true)
            .put(T, "a", json!("a"), true)
            .put(T, "B", json!("B"), true)
            .put(T, "c", json!("c"), false)
            .put(OTHER, "a0", json!("other"), true),
        "setup puts",
    )
    .await;

    assert_eq!(
        list_work(store, T, 10).await,
        ["B", "a", "b"],
        "list_work must return the active items of the kind, by key bytes"
    );
    assert_eq!(
        list_work(store, T, 2).await,
        ["B", "a"],
        "list_work must return at most `limit` items, the first by key"
    );
    assert!(
        list_work(store, T, 0).await.is_empty(),
        "list_work with limit 0 must return nothing"
    );

    commit_ok(
        store,
        Tx::new().put(T, "a", json!("a done"), false),
        "finishing",
    )
    .await;
    commit_ok(
        store,
        Tx::new().put(T, "c", json!("c again"), true),
        "restarting",
    )
    .await;
    assert_eq!(
        list_work(store, T, 10).await,
        ["B", "b", "c"],
        "a finishing write must drop an item and a starting one bring it back"
    );
    assert_eq!(
        get(store, T, "c").await,
        Some(Versioned {
            version: 2,
            value: json!("c again"),
        }),
        "the row itself is the schema's"
    );
    assert!(
        list_work(store, "conformance_active_none", 10)
            .await
            .is_empty(),
        "a kind without items has no active ones"
    );
}

/// Commits racing on one expectation serialise: exactly one wins and the others conflict,
/// both for an absent record and for an existing version. Blind puts racing on one record all
/// succeed and each bumps the version.
pub async fn concurrent_commits_expecting_one_version_let_exactly_one_win(
    store: &dyn Store<KvSchema>,
) {
    const T: &str = "conformance_race";
    for (what, expected) in [("absent", None), ("at version 1", Some(1))] {
        let results = futures::future::join_all(
            (0..RACERS).map(|i| store.commit(Tx::new().put_at(T, "k", expected, json!(i), true))),
        )
        .await;
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            wins, 1,
            "{RACERS} commits expecting the record {what} must let exactly one win: {results:?}"
        );
        for loser in results.iter().filter(|r| r.is_err()) {
            assert_eq!(
                loser,
                &Err(conflict(T, "k")),
                "a commit losing the race for a record {what} must conflict"
            );
        }
        let version = expected.map_or(1, |v| v + 1);
        let stored = get(store, T, "k").await;
        assert_eq!(
            stored.map(|v| v.version),
            Some(version),
            "after the race for a record {what}, it must be at version {version}"
        );
    }

    let results = futures::future::join_all(
        (0..RACERS).map(|i| store.commit(Tx::new().put(T, "blind", json!(i), true))),
    )
    .await;
    assert!(
        results.iter().all(Result::is_ok),
        "racing blind puts must all succeed: {results:?}"
    );
    assert_eq!(
        get(store, T, "blind").await.map(|v| v.version),
        Some(RACERS as i64),
        "each of {RACERS} racing blind puts must bump the version"
    );
}

fn message(event_id: &str, key: &str) -> OutboxMessage {
    OutboxMessage {
        event_id: event_id.into(),
        topic: "conformance.events".into(),
        key: key.into(),
        payload: json!({"event": event_id}),
        headers: vec![],
    }
}

fn conflict(table: &str, key: &str) -> StoreError {
    StoreError::Conflict {
        table: table.into(),
        key: key.into(),
    }
}

fn duplicate(consumer: &str, event_id: &str) -> StoreError {
    StoreError::Duplicate {
        consumer: consumer.into(),
        event_id: event_id.into(),
    }
}

async fn claim(
    store: &dyn Store<KvSchema>,
    table: &str,
    owner: &str,
    limit: usize,
) -> Vec<Claimed> {
    store
        .claim_work(table, owner, limit)
        .await
        .unwrap_or_else(|e| panic!("claim_work({table}, {owner}) failed: {e}"))
}

async fn lease(
    store: &dyn Store<KvSchema>,
    name: &str,
    owner: &str,
    lease: Duration,
) -> Option<i64> {
    store
        .acquire_lease(name, owner, lease)
        .await
        .unwrap_or_else(|e| panic!("acquire_lease({name}, {owner}) failed: {e}"))
}

async fn cleanup(store: &dyn Store<KvSchema>, retention: Duration) -> platform::ports::Cleaned {
    store
        .cleanup(retention)
        .await
        .unwrap_or_else(|e| panic!("cleanup({retention:?}) failed: {e}"))
}

fn keys(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.key.as_str()).collect()
}

fn tokens(claimed: &[Claimed]) -> Vec<i64> {
    claimed.iter().map(|c| c.token).collect()
}

async fn commit_ok(store: &dyn Store<KvSchema>, tx: Tx<KvWrite>, what: &str) {
    if let Err(e) = store.commit(tx.clone()).await {
        panic!("{what}: commit must succeed, got {e:?} for {tx:?}");
    }
}

async fn get(store: &dyn Store<KvSchema>, table: &str, key: &str) -> Option<Versioned> {
    store
        .query(KvQuery::Get {
            table: table.into(),
            key: key.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("get {table}/{key} failed: {e}"))
}

async fn assert_version(
    store: &dyn Store<KvSchema>,
    table: &str,
    key: &str,
    version: i64,
    body: serde_json::Value,
    when: &str,
) {
    assert_eq!(
        get(store, table, key).await,
        Some(Versioned {
            version,
            value: body
        }),
        "{when}: {table}/{key} must be at version {version} with the body shown"
    );
}

async fn list_work(store: &dyn Store<KvSchema>, kind: &str, limit: usize) -> Vec<String> {
    store
        .list_work(kind, limit)
        .await
        .unwrap_or_else(|e| panic!("list_work({kind}, {limit}) failed: {e}"))
}

async fn pending(store: &dyn Store<KvSchema>) -> Vec<OutboxRow> {
    store
        .outbox_pending(PENDING_SCAN_ROWS_MAX)
        .await
        .unwrap_or_else(|e| panic!("outbox_pending failed: {e}"))
}

async fn mark_sent(store: &dyn Store<KvSchema>, ids: &[i64]) {
    store
        .outbox_mark_sent(ids)
        .await
        .unwrap_or_else(|e| panic!("outbox_mark_sent({ids:?}) failed: {e}"));
}

async fn assert_not_pending(store: &dyn Store<KvSchema>, event_id: &str, what: &str) {
    let rows = pending(store).await;
    assert!(
        rows.iter().all(|r| r.message.event_id != event_id),
        "the outbox row of {what} was written: {rows:?}"
    );
}

fn messages(rows: &[OutboxRow]) -> Vec<OutboxMessage> {
    rows.iter().map(|r| r.message.clone()).collect()
}

fn ids(rows: &[OutboxRow]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::store::MemoryStore;

    #[tokio::test]
    async fn the_memory_store_passes_the_store_conformance_suite() {
        run_all(&MemoryStore::<KvSchema>::default()).await;
    }
}
