//! Differential tests: for each service's schema, the same random sequence of transactions
//! and queries gives the same results on its in-memory model (what the simulation runs) and
//! on its typed tables in real PostgreSQL (what production runs): each commit succeeds or is
//! refused the same way (`Conflict` on the same row, `Duplicate`, `Fatal`), every query answers
//! the same, and the platform's work items (what instances claim) are the same.
//!
//! Key spaces are small on purpose, so sequences hit every conflict: a create of an existing
//! order, an update at a stale version, a payment of an unknown order.

use std::sync::Arc;

use adapters::{postgres::PgSchema, PgStore, SchemaName};
use platform::{
    ports::{Platform, Store, StoreError, Tx},
    store::MemoryState,
};
use proptest::{prelude::*, test_runner::TestRunner};

use crate::support;

/// One step of a sequence.
enum Op<S: platform::ports::Schema> {
    Commit(Vec<S::Write>),
    Query(S::Query),
}

impl<S: platform::ports::Schema> Clone for Op<S> {
    fn clone(&self) -> Self {
        match self {
            Op::Commit(w) => Op::Commit(w.clone()),
            Op::Query(q) => Op::Query(q.clone()),
        }
    }
}

impl<S: platform::ports::Schema> std::fmt::Debug for Op<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Commit(w) => f.debug_tuple("Commit").field(w).finish(),
            Op::Query(q) => f.debug_tuple("Query").field(q).finish(),
        }
    }
}

/// Sequences per schema and their length.
const CASES: u32 = 40;
const OPS_MAX: usize = 24;

/// How a commit ended, compared across the two stores (`Fatal` texts differ by design).
fn outcome(r: &Result<(), StoreError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(StoreError::Fatal(_)) => "fatal".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// Empties every table of the store's schema but the migration history.
async fn reset<S: PgSchema>(store: &PgStore<S>) {
    let sql = format!(
        "DO $$ DECLARE t text; BEGIN \
           FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = '{schema}' \
                    AND tablename <> '_sqlx_migrations' LOOP \
             EXECUTE format('TRUNCATE %I.%I RESTART IDENTITY CASCADE', '{schema}', t); \
           END LOOP; END $$",
        schema = store.schema()
    );
    sqlx::raw_sql(&sql)
        .execute(store.pool())
        .await
        .expect("truncate the schema's tables");
}

/// How answers are compared: as they are, or through a schema's `comparable` view.
type Compare<S> = fn(
    &<S as platform::ports::Schema>::Query,
    <S as platform::ports::Schema>::Answer,
) -> <S as platform::ports::Schema>::Answer;

async fn run_ops<S: PgSchema>(
    store: &PgStore<S>,
    ops: Vec<Op<S>>,
    kinds: &[&str],
    compare: Compare<S>,
) {
    reset(store).await;
    let mut model = MemoryState::<S>::default();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Commit(writes) => {
                let tx = writes.into_iter().fold(Tx::new(), Tx::write);
                let in_model = model.apply(tx.clone(), 0);
                let in_pg = store.commit(tx.clone()).await;
                assert_eq!(
                    outcome(&in_model),
                    outcome(&in_pg),
                    "step {i}: the model and PostgreSQL disagree on {tx:?}"
                );
                for kind in kinds {
                    let pg = store.list_work(kind, 1_000).await.expect("list work");
                    assert_eq!(
                        model.platform.list_work(kind, 1_000),
                        pg,
                        "step {i}: active {kind} differ after {tx:?}"
                    );
                }
            }
            Op::Query(q) => {
                let pg = compare(&q, store.query(q.clone()).await.expect("query"));
                assert_eq!(
                    compare(&q, model.query(&q)),
                    pg,
                    "step {i}: {q:?} answers differ"
                );
            }
        }
    }
}

/// Runs [`CASES`] sequences drawn from `ops` on the model and on a fresh schema.
fn differential<S: PgSchema>(ops: impl Strategy<Value = Vec<Op<S>>>, kinds: &'static [&'static str])
where
    S::Write: std::panic::RefUnwindSafe,
    S::Query: std::panic::RefUnwindSafe,
{
    differential_with::<S>(ops, kinds, |_, a| a)
}

/// [`differential`], comparing answers through `compare`.
fn differential_with<S: PgSchema>(
    ops: impl Strategy<Value = Vec<Op<S>>>,
    kinds: &'static [&'static str],
    compare: Compare<S>,
) where
    S::Write: std::panic::RefUnwindSafe,
    S::Query: std::panic::RefUnwindSafe,
{
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let schema = SchemaName::parse(&support::unique("diff")).expect("valid");
    let store: Arc<PgStore<S>> = Arc::new(rt.block_on(async {
        PgStore::<S>::connect(&support::database_url(), &schema)
            .await
            .expect("PostgreSQL reachable")
    }));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&ops, |ops| {
        rt.block_on(run_ops(&store, ops, kinds, compare));
        Ok(())
    });
    rt.block_on(async {
        store.close().await;
        support::drop_schema(&schema).await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A stored trace context: none, a real one, or one past the tables' bound (which the model
/// and the table must both refuse).
fn trace_text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just(String::new()),
        Just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nvendor=x".to_owned()),
        Just("t".repeat(platform::trace::STORED_CHARS_MAX + 1)),
    ]
}

fn sequence<S: platform::ports::Schema>(
    write: impl Strategy<Value = S::Write> + Clone,
    query: impl Strategy<Value = S::Query>,
) -> impl Strategy<Value = Vec<Op<S>>>
where
    S::Write: std::fmt::Debug,
    S::Query: std::fmt::Debug,
{
    let op = prop_oneof![
        3 => prop::collection::vec(write, 1..=3).prop_map(Op::Commit),
        1 => query.prop_map(Op::Query),
    ];
    prop::collection::vec(op, 1..=OPS_MAX)
}

mod order_schema {
    use order::{Order, OrderQuery, OrderSchema, OrderStatus, OrderWrite};

    use super::*;

    const IDS: [&str; 3] = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
    ];
    const KEYS: [&str; 3] = ["req-a", "req-b", "req-c"];
    const STATUSES: [OrderStatus; 5] = [
        OrderStatus::Created,
        OrderStatus::PaymentPending,
        OrderStatus::Paid,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    fn order() -> impl Strategy<Value = Order> + Clone {
        (
            prop::sample::select(&IDS[..]),
            prop::collection::vec(prop::sample::select(&STATUSES[..]), 1..4),
            prop_oneof![Just(1i64), 1i64..=1_000_000_000, Just(0i64)],
            prop::sample::select(&["RUB", "USD", "rub"][..]),
            0u64..2_000_000_000_000,
        )
            .prop_map(|(id, history, amount_minor, currency, since)| Order {
                order_id: id.into(),
                customer_id: "c-1".into(),
                item: "bike".into(),
                amount_minor,
                currency: currency.into(),
                ad_id: "ad-1".into(),
                ad_version: 1,
                status: *history.last().unwrap_or(&OrderStatus::Created),
                history,
                status_since_ms: since,
                created_ms: since / 2,
                reason: String::new(),
                trace: String::new(),
            })
            .prop_flat_map(|o| trace_text().prop_map(move |trace| Order { trace, ..o.clone() }))
    }

    fn write() -> impl Strategy<Value = OrderWrite> + Clone {
        prop_oneof![
            (order(), prop::sample::select(&KEYS[..])).prop_map(|(order, key)| {
                OrderWrite::Create {
                    order,
                    request_key: key.into(),
                }
            }),
            (order(), 1i64..4).prop_map(|(order, version)| OrderWrite::Update { order, version }),
        ]
    }

    fn query() -> impl Strategy<Value = OrderQuery> {
        prop_oneof![
            prop::sample::select(&IDS[..]).prop_map(|id| OrderQuery::Order {
                order_id: id.into()
            }),
            Just(OrderQuery::Order {
                order_id: "not-a-uuid".into()
            }),
            prop::sample::select(&KEYS[..]).prop_map(|k| OrderQuery::ByRequest {
                request_key: k.into()
            }),
        ]
    }

    #[test]
    fn the_order_model_and_postgres_agree_on_random_transactions() {
        differential::<OrderSchema>(sequence(write(), query()), &[order::domain::ORDERS]);
    }
}

mod payment_schema {
    use payment::{
        store::{PaymentQuery, PaymentWrite, PAYMENTS},
        Payment, PaymentSchema, PaymentStatus,
    };

    use super::*;

    const KEYS: [&str; 3] = ["charge-1", "charge-2", "charge-3"];
    const ORDERS: [&str; 2] = ["order-1", "order-2"];

    fn payment() -> impl Strategy<Value = Payment> + Clone {
        (
            prop::sample::select(&KEYS[..]),
            prop::sample::select(&ORDERS[..]),
            prop::sample::select(&PaymentStatus::ALL[..]),
            prop_oneof![Just(1_000i64), Just(0i64)],
            any::<bool>(),
            prop::option::of(Just("ch-1".to_owned())),
        )
            .prop_map(
                |(key, order_id, status, amount_minor, refund_requested, charge_id)| Payment {
                    key: key.into(),
                    order_id: order_id.into(),
                    amount_minor,
                    currency: "RUB".into(),
                    status,
                    charge_id,
                    refund_requested,
                    reason: String::new(),
                    trace: String::new(),
                },
            )
            .prop_flat_map(|p| trace_text().prop_map(move |trace| Payment { trace, ..p.clone() }))
    }

    fn write() -> impl Strategy<Value = PaymentWrite> + Clone {
        prop_oneof![
            (
                prop::sample::select(&ORDERS[..]),
                any::<bool>(),
                prop::option::of(1i64..4)
            )
                .prop_map(|(order_id, refund_requested, expected)| {
                    PaymentWrite::PutOrder {
                        order_id: order_id.into(),
                        refund_requested,
                        expected,
                    }
                }),
            payment().prop_map(PaymentWrite::InsertPayment),
            (payment(), 1i64..4)
                .prop_map(|(payment, version)| PaymentWrite::UpdatePayment { payment, version }),
        ]
    }

    fn query() -> impl Strategy<Value = PaymentQuery> {
        prop_oneof![
            prop::sample::select(&KEYS[..]).prop_map(|k| PaymentQuery::Payment { key: k.into() }),
            prop::sample::select(&ORDERS[..])
                .prop_map(|o| PaymentQuery::Order { order_id: o.into() }),
        ]
    }

    #[test]
    fn the_payment_model_and_postgres_agree_on_random_transactions() {
        differential::<PaymentSchema>(sequence(write(), query()), &[PAYMENTS]);
    }
}

mod delivery_schema {
    use delivery::{
        store::{DeliveryQuery, DeliveryWrite, SHIPMENTS, STAGES},
        DeliverySchema, Shipment,
    };

    use super::*;

    const ORDERS: [&str; 3] = ["order-1", "order-2", "order-3"];

    fn shipment() -> impl Strategy<Value = Shipment> + Clone {
        (
            prop::sample::select(&ORDERS[..]),
            prop::sample::select(&STAGES[..]),
            prop::option::of(Just("courier-1".to_owned())),
            any::<bool>(),
        )
            .prop_map(|(order_id, stage, courier_id, cancel_requested)| Shipment {
                order_id: order_id.into(),
                address: "pickup point 1".into(),
                stage: stage.into(),
                courier_id,
                cancel_requested,
                trace: String::new(),
            })
            .prop_flat_map(|s| trace_text().prop_map(move |trace| Shipment { trace, ..s.clone() }))
    }

    fn write() -> impl Strategy<Value = DeliveryWrite> + Clone {
        prop_oneof![
            shipment().prop_map(DeliveryWrite::Insert),
            (shipment(), 1i64..4)
                .prop_map(|(shipment, version)| DeliveryWrite::Update { shipment, version }),
        ]
    }

    fn query() -> impl Strategy<Value = DeliveryQuery> {
        prop::sample::select(&ORDERS[..])
            .prop_map(|o| DeliveryQuery::Shipment { order_id: o.into() })
    }

    #[test]
    fn the_delivery_model_and_postgres_agree_on_random_transactions() {
        differential::<DeliverySchema>(sequence(write(), query()), &[SHIPMENTS]);
    }
}

mod analytics_schema {
    use analytics::{MartQuery, MartSchema, MartWrite};

    use super::*;

    const KEYS: [&str; 4] = [
        "status:PAID",
        "status:CREATED",
        "revenue:RUB",
        "status:paid",
    ];

    fn write() -> impl Strategy<Value = MartWrite> + Clone {
        (prop::sample::select(&KEYS[..]), -5i64..=5).prop_map(|(key, by)| MartWrite::Add {
            key: key.into(),
            by,
        })
    }

    fn query() -> impl Strategy<Value = MartQuery> {
        prop_oneof![
            Just(MartQuery::All),
            prop::sample::select(&KEYS[..]).prop_map(|k| MartQuery::Counter(k.into())),
        ]
    }

    #[test]
    fn the_analytics_model_and_postgres_agree_on_random_transactions() {
        differential::<MartSchema>(sequence(write(), query()), &[]);
    }
}

mod user_schema {
    use user::{
        store::{KeyRow, RefreshToken, REFRESH_STATES},
        User, UserQuery, UserSchema, UserWrite,
    };

    use super::*;

    const IDS: [&str; 3] = ["user-1", "user-2", "user-3"];
    const EMAILS: [&str; 3] = ["ann@x.org", "bob@x.org", "x"];
    const HASHES: [&str; 3] = ["h1", "h2", ""];
    const FAMILIES: [&str; 2] = ["f1", "f2"];
    const SCOPES: [(&str, &str); 3] = [
        ("account", "ann@x.org"),
        ("address", "10.0.0.1"),
        ("account", "bob@x.org"),
    ];

    fn user() -> impl Strategy<Value = User> + Clone {
        (
            prop::sample::select(&IDS[..]),
            prop::sample::select(&EMAILS[..]),
            prop::sample::select(&["Ann", "", "Bob B."][..]),
            prop::sample::select(&["$argon2id$a", ""][..]),
        )
            .prop_map(|(id, email, name, hash)| User {
                user_id: id.into(),
                email: email.to_uppercase(),
                email_key: email.into(),
                display_name: name.into(),
                password_hash: hash.into(),
                created_ms: 5,
            })
    }

    fn write() -> impl Strategy<Value = UserWrite> + Clone {
        prop_oneof![
            user().prop_map(UserWrite::InsertUser),
            (user(), 1i64..4).prop_map(|(user, version)| UserWrite::UpdateUser { user, version }),
            (prop::sample::select(&["k1", "k2", ""][..]), 0i64..3).prop_map(|(kid, created_ms)| {
                UserWrite::InsertKey(KeyRow {
                    kid: kid.into(),
                    seed: "c2VlZA".into(),
                    created_ms,
                })
            }),
            (
                prop::sample::select(&HASHES[..]),
                prop::sample::select(&FAMILIES[..]),
                prop::sample::select(&REFRESH_STATES[..]),
                0i64..3
            )
                .prop_map(|(hash, family, state, expires_ms)| {
                    UserWrite::IssueRefresh(RefreshToken {
                        token_hash: hash.into(),
                        user_id: "user-1".into(),
                        family_id: family.into(),
                        expires_ms,
                        state: state.into(),
                    })
                }),
            (prop::sample::select(&HASHES[..]), 1i64..4).prop_map(|(h, version)| {
                UserWrite::SpendRefresh {
                    token_hash: h.into(),
                    version,
                }
            }),
            prop::sample::select(&FAMILIES[..]).prop_map(|f| UserWrite::RevokeFamily {
                family_id: f.into()
            }),
            (
                prop::sample::select(&SCOPES[..]),
                0i64..40,
                prop::sample::select(&[10i64, 1000][..])
            )
                .prop_map(|((scope, key), now_ms, window_ms)| {
                    UserWrite::CountFailure {
                        scope: scope.into(),
                        key: key.into(),
                        now_ms,
                        window_ms,
                    }
                }),
            prop::sample::select(&SCOPES[..]).prop_map(|(scope, key)| UserWrite::ClearFailures {
                scope: scope.into(),
                key: key.into()
            }),
            (0i64..40).prop_map(|before_ms| UserWrite::Purge { before_ms }),
        ]
    }

    fn query() -> impl Strategy<Value = UserQuery> {
        prop_oneof![
            prop::sample::select(&IDS[..])
                .prop_map(|id| UserQuery::UserById { user_id: id.into() }),
            prop::sample::select(&EMAILS[..]).prop_map(|e| UserQuery::UserByEmail {
                email_key: e.into()
            }),
            Just(UserQuery::Keys),
            prop::sample::select(&HASHES[..]).prop_map(|h| UserQuery::Refresh {
                token_hash: h.into()
            }),
            prop::collection::vec(prop::sample::select(&SCOPES[..]), 0..4).prop_map(|keys| {
                UserQuery::Failures {
                    keys: keys
                        .into_iter()
                        .map(|(s, k)| (s.to_owned(), k.to_owned()))
                        .collect(),
                }
            }),
        ]
    }

    #[test]
    fn the_user_model_and_postgres_agree_on_random_transactions() {
        differential::<UserSchema>(sequence(write(), query()), &[]);
    }
}

mod ad_schema {
    use ad::{store::STATUSES, Ad, AdQuery, AdSchema, AdWrite};

    use super::*;

    const IDS: [&str; 3] = ["ad-1", "ad-2", "ad-3"];
    const KEYS: [&str; 3] = ["req-a", "req-b", "req-c"];

    fn ad() -> impl Strategy<Value = Ad> + Clone {
        (
            prop::sample::select(&IDS[..]),
            prop::sample::select(&["Bike", "", "Lamp"][..]),
            prop_oneof![Just(100i64), Just(0i64), Just(5_000i64)],
            prop::sample::select(&STATUSES[..]),
            prop::collection::vec(Just("m-1".to_owned()), 0..12),
            prop::sample::select(&["bikes", "home"][..]),
        )
            .prop_map(|(id, title, price_minor, status, photos, category)| Ad {
                ad_id: id.into(),
                owner_id: "user-1".into(),
                title: title.into(),
                description: String::new(),
                price_minor,
                currency: "RUB".into(),
                category: category.into(),
                region: "msk".into(),
                photos,
                status: status.into(),
                created_ms: 1,
                updated_ms: 2,
            })
    }

    fn write() -> impl Strategy<Value = AdWrite> + Clone {
        prop_oneof![
            (ad(), prop::sample::select(&KEYS[..])).prop_map(|(ad, key)| AdWrite::Create {
                ad,
                request_key: key.into()
            }),
            (ad(), 1i64..4).prop_map(|(ad, version)| AdWrite::Update { ad, version }),
        ]
    }

    fn query() -> impl Strategy<Value = AdQuery> {
        prop_oneof![
            prop::sample::select(&IDS[..]).prop_map(|id| AdQuery::Ad { ad_id: id.into() }),
            prop::sample::select(&KEYS[..]).prop_map(|k| AdQuery::ByRequest {
                request_key: k.into()
            }),
        ]
    }

    #[test]
    fn the_ad_model_and_postgres_agree_on_random_transactions() {
        differential::<AdSchema>(sequence(write(), query()), &[]);
    }
}

mod search_schema {
    use search::{
        store::{After, Doc, Search, Sort},
        SearchAnswer, SearchQuery, SearchSchema, SearchWrite,
    };

    use super::*;

    const IDS: [&str; 4] = ["ad-1", "ad-2", "ad-3", "ad-4"];
    // Words that are their own stems in the english and russian configurations and are no
    // stop words: the model matches whole words (see `search::store`).
    const WORDS: [&str; 5] = ["bike", "red", "oak", "lamp", "desk"];

    fn doc() -> impl Strategy<Value = Doc> + Clone {
        (
            prop::sample::select(&IDS[..]),
            1i64..4,
            prop::collection::vec(prop::sample::select(&WORDS[..]), 1..4),
            prop::sample::select(&WORDS[..]),
            prop::sample::select(&[100i64, 250, 900][..]),
            prop::sample::select(&["bikes", "home"][..]),
            prop::sample::select(&["ACTIVE", "HIDDEN", "DELETED"][..]),
            0i64..5,
        )
            .prop_map(
                |(id, version, title, description, price, category, status, created)| Doc {
                    ad_id: id.into(),
                    version,
                    owner_id: "user-1".into(),
                    title: title.join(" "),
                    description: description.into(),
                    price_minor: price,
                    currency: "RUB".into(),
                    category: category.into(),
                    region: "msk".into(),
                    status: status.into(),
                    created_ms: created,
                },
            )
    }

    fn write() -> impl Strategy<Value = SearchWrite> + Clone {
        doc().prop_map(SearchWrite::Upsert)
    }

    fn sort() -> impl Strategy<Value = Sort> {
        prop::sample::select(
            &[
                Sort::Relevance,
                Sort::Newest,
                Sort::PriceAsc,
                Sort::PriceDesc,
            ][..],
        )
    }

    fn query() -> impl Strategy<Value = SearchQuery> {
        prop_oneof![
            (
                prop::collection::vec(prop::sample::select(&WORDS[..]), 0..3),
                prop::option::of(prop::sample::select(&["bikes", "home"][..])),
                prop::option::of(prop::sample::select(&[200i64, 900][..])),
                prop::option::of(prop::sample::select(&[100i64, 300][..])),
                sort(),
                prop::option::of((0i64..1000, prop::sample::select(&IDS[..]))),
                1u32..6,
                any::<bool>(),
            )
                .prop_map(|(words, category, max, min, sort, after, limit, hidden)| {
                    // Relevance ranks differ by design: compared whole and unpaged.
                    let relevance = sort == Sort::Relevance && !words.is_empty();
                    SearchQuery::Search(Search {
                        text: words.join(" "),
                        category: category.map(str::to_owned),
                        region: None,
                        price_min: min,
                        price_max: max,
                        statuses: if hidden {
                            vec!["ACTIVE".into(), "HIDDEN".into()]
                        } else {
                            vec!["ACTIVE".into()]
                        },
                        sort,
                        after: after.filter(|_| !relevance).map(|(key, id)| After {
                            key: key as f64,
                            ad_id: id.into(),
                        }),
                        limit: if relevance { 100 } else { limit },
                    })
                }),
            prop::sample::select(&IDS[..]).prop_map(|id| SearchQuery::Doc { ad_id: id.into() }),
            Just(SearchQuery::Versions),
        ]
    }

    /// A relevance page with words, as a set of ids (its order is PostgreSQL's `ts_rank`).
    fn comparable(q: &SearchQuery, a: SearchAnswer) -> SearchAnswer {
        match (q, a) {
            (SearchQuery::Search(s), SearchAnswer::Page(mut hits))
                if s.sort == Sort::Relevance && !s.text.is_empty() =>
            {
                for h in &mut hits {
                    h.key = 0.0;
                }
                hits.sort_by(|a, b| a.doc.ad_id.cmp(&b.doc.ad_id));
                SearchAnswer::Page(hits)
            }
            (_, a) => a,
        }
    }

    #[test]
    fn the_search_model_and_postgres_agree_on_random_transactions() {
        differential_with::<SearchSchema>(sequence(write(), query()), &[], comparable);
    }
}

mod media_schema {
    use media::{store::STATES, MediaQuery, MediaSchema, MediaWrite, Photo};

    use super::*;

    const IDS: [&str; 3] = ["p-1", "p-2", "p-3"];
    const KEYS: [&str; 3] = ["photos/a/1", "photos/a/2", "photos/b/1"];

    fn photo() -> impl Strategy<Value = Photo> + Clone {
        (
            prop::sample::select(&IDS[..]),
            prop::sample::select(&KEYS[..]),
            prop::sample::select(&["u-1", "u-2"][..]),
            prop_oneof![Just(10i64), Just(0i64)],
            prop_oneof![4 => Just("PENDING"), 1 => Just("READY")],
            0i64..4,
        )
            .prop_map(|(id, key, owner, size, state, t)| Photo {
                photo_id: id.into(),
                owner_id: owner.into(),
                ad_id: "ad-1".into(),
                object_key: key.into(),
                content_type: "image/png".into(),
                size_bytes: size,
                state: state.into(),
                reason: String::new(),
                created_ms: t,
                upload_expires_ms: 10 + t,
                updated_ms: t,
            })
    }

    fn write() -> impl Strategy<Value = MediaWrite> + Clone {
        prop_oneof![
            photo().prop_map(MediaWrite::Create),
            (
                prop::sample::select(&IDS[..]),
                prop::sample::select(&STATES[..]),
                prop::sample::select(&["", "too big"][..]),
            )
                .prop_map(|(id, state, reason)| MediaWrite::Decide {
                    photo_id: id.into(),
                    state: state.into(),
                    reason: reason.into(),
                    at_ms: 7,
                }),
        ]
    }

    fn query() -> impl Strategy<Value = MediaQuery> {
        prop_oneof![
            prop::sample::select(&IDS[..]).prop_map(|id| MediaQuery::Photo {
                photo_id: id.into()
            }),
            (prop::sample::select(&["u-1", "u-2"][..]), 0i64..4, 0u32..3).prop_map(
                |(owner, since, limit)| MediaQuery::CreatedBy {
                    owner_id: owner.into(),
                    since_ms: since,
                    limit,
                }
            ),
            (10i64..15, 0u32..3).prop_map(|(before, limit)| MediaQuery::Abandoned {
                before_ms: before,
                limit
            }),
        ]
    }

    #[test]
    fn the_media_model_and_postgres_agree_on_random_transactions() {
        differential::<MediaSchema>(sequence(write(), query()), &[]);
    }
}

mod report_schema {
    use report::{
        store::{REASONS, TARGET_KINDS},
        Report, ReportQuery, ReportSchema, ReportWrite,
    };

    use super::*;

    const IDS: [&str; 3] = ["r-1", "r-2", "r-3"];
    const USERS: [&str; 2] = ["u-1", "u-2"];

    fn report() -> impl Strategy<Value = Report> + Clone {
        (
            prop::sample::select(&IDS[..]),
            prop::sample::select(&USERS[..]),
            prop::sample::select(&TARGET_KINDS[..]),
            prop::sample::select(&["t-1", "t-2"][..]),
            prop_oneof![4 => prop::sample::select(&REASONS[..]), 1 => Just("bogus")],
            prop_oneof![4 => Just("PROCESSING"), 1 => Just("DECIDED")],
            0i64..4,
        )
            .prop_map(|(id, reporter, kind, target, reason, status, t)| Report {
                report_id: id.into(),
                reporter_id: reporter.into(),
                target_kind: kind.into(),
                target_id: target.into(),
                reason: reason.into(),
                comment: String::new(),
                status: status.into(),
                decision: String::new(),
                decision_reason: String::new(),
                created_ms: t,
                decided_ms: 0,
            })
    }

    fn write() -> impl Strategy<Value = ReportWrite> + Clone {
        prop_oneof![
            report().prop_map(ReportWrite::Create),
            (
                prop::sample::select(&IDS[..]),
                prop::sample::select(&["BAN", "OK", "MAYBE"][..]),
            )
                .prop_map(|(id, decision)| ReportWrite::Decide {
                    report_id: id.into(),
                    decision: decision.into(),
                    reason: "rule".into(),
                    at_ms: 9,
                }),
        ]
    }

    fn query() -> impl Strategy<Value = ReportQuery> {
        prop_oneof![
            prop::sample::select(&IDS[..]).prop_map(|id| ReportQuery::Report {
                report_id: id.into()
            }),
            (
                prop::sample::select(&USERS[..]),
                prop::sample::select(&TARGET_KINDS[..]),
                prop::sample::select(&["t-1", "t-2"][..]),
            )
                .prop_map(|(r, k, t)| ReportQuery::OfTarget {
                    reporter_id: r.into(),
                    target_kind: k.into(),
                    target_id: t.into(),
                }),
            (prop::sample::select(&USERS[..]), 0i64..4, 0u32..3).prop_map(|(r, since, limit)| {
                ReportQuery::MadeBy {
                    reporter_id: r.into(),
                    since_ms: since,
                    limit,
                }
            }),
        ]
    }

    #[test]
    fn the_report_model_and_postgres_agree_on_random_transactions() {
        differential::<ReportSchema>(sequence(write(), query()), &[]);
    }
}

mod moderation_schema {
    use moderation::{Decision, ModerationQuery, ModerationSchema, ModerationWrite};

    use super::*;

    fn decision() -> impl Strategy<Value = Decision> + Clone {
        (
            prop::sample::select(&["d-1", "d-2", "d-3"][..]),
            prop::sample::select(&["task-1", "task-2"][..]),
            prop::sample::select(&["AD", "USER", "CAT"][..]),
            prop::sample::select(&["BAN", "OK"][..]),
            0i64..3,
        )
            .prop_map(|(id, task, kind, decision, t)| Decision {
                decision_id: id.into(),
                task_id: task.into(),
                target_kind: kind.into(),
                target_id: "t-1".into(),
                decision: decision.into(),
                reason: "rule".into(),
                worker: "moderation-1".into(),
                decided_ms: t,
            })
    }

    fn write() -> impl Strategy<Value = ModerationWrite> + Clone {
        decision().prop_map(ModerationWrite::Decide)
    }

    fn query() -> impl Strategy<Value = ModerationQuery> {
        prop::sample::select(&["task-1", "task-2"][..])
            .prop_map(|t| ModerationQuery::OfTask { task_id: t.into() })
    }

    #[test]
    fn the_moderation_model_and_postgres_agree_on_random_transactions() {
        differential::<ModerationSchema>(sequence(write(), query()), &[]);
    }
}

mod notification_schema {
    use notification::{
        Feed, NotificationQuery, NotificationSchema, NotificationWrite, Outgoing, Update,
    };

    use super::*;

    const RECIPIENTS: [&str; 2] = ["u-1", "u-2"];

    fn write() -> impl Strategy<Value = NotificationWrite> + Clone {
        prop_oneof![
            (
                prop::sample::select(&RECIPIENTS[..]),
                prop::sample::select(&["e-1", "e-2", ""][..])
            )
                .prop_map(|(r, e)| NotificationWrite::Open(Feed {
                    recipient: r.into(),
                    epoch: e.into(),
                    created_ms: 1,
                })),
            (
                prop::sample::select(&RECIPIENTS[..]),
                0i64..5,
                prop::sample::select(&["order.status", "notice", "bogus"][..]),
                prop::sample::select(&["o-1", ""][..]),
                prop::bool::weighted(0.05),
            )
                .prop_map(|(r, seq, kind, subject, huge)| {
                    NotificationWrite::Append(Update {
                        recipient: r.into(),
                        seq,
                        kind: kind.into(),
                        subject: subject.into(),
                        body: if huge {
                            format!("\"{}\"", "x".repeat(notification::BODY_BYTES_MAX))
                        } else {
                            format!("{{\"n\":{seq}}}")
                        },
                        created_ms: seq,
                    })
                }),
            (prop::sample::select(&RECIPIENTS[..]), 0i64..6).prop_map(|(r, keep_from)| {
                NotificationWrite::Trim {
                    recipient: r.into(),
                    keep_from,
                }
            }),
            (
                prop::sample::select(&KEYS[..]),
                prop::sample::select(&["email", "in_app", "fax"][..]),
                prop::sample::select(&["PENDING", "SENT", "LOST"][..]),
                0i32..3,
                prop::option::of(0i64..3),
            )
                .prop_map(|(key, channel, status, attempts, version)| {
                    let o = Outgoing {
                        key: key.into(),
                        recipient: "u-1".into(),
                        channel: channel.into(),
                        template: "order_delivered".into(),
                        request: format!("{{\"k\":\"{key}\"}}"),
                        subject: "s".into(),
                        body: "b".into(),
                        status: status.into(),
                        attempts: attempts - 1,
                        reason: String::new(),
                        provider_id: format!("p{attempts}"),
                        next_attempt_ms: i64::from(attempts),
                        created_ms: 1,
                        updated_ms: 2,
                        trace: if attempts == 2 {
                            "t".repeat(platform::trace::STORED_CHARS_MAX + 1)
                        } else {
                            String::new()
                        },
                    };
                    match version {
                        None => NotificationWrite::Queue(o),
                        Some(version) => NotificationWrite::Settle {
                            outgoing: o,
                            version,
                        },
                    }
                }),
        ]
    }

    const KEYS: [&str; 2] = ["k-1", "k-2"];

    fn query() -> impl Strategy<Value = NotificationQuery> {
        prop_oneof![
            (prop::sample::select(&RECIPIENTS[..]), -1i64..5, 0u32..4).prop_map(
                |(r, after, limit)| NotificationQuery::Feed {
                    recipient: r.into(),
                    after,
                    limit,
                }
            ),
            prop::sample::select(&KEYS[..])
                .prop_map(|k| NotificationQuery::Outgoing { key: k.into() }),
        ]
    }

    #[test]
    fn the_notification_model_and_postgres_agree_on_random_transactions() {
        differential::<NotificationSchema>(sequence(write(), query()), &[]);
    }
}
