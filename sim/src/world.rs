//! Builds the simulated marketplace, runs a scenario's fault phase, heals, waits for
//! liveness, and hands the final state to the checkers.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use analytics::MartSchema;
use delivery::DeliverySchema;
use madsim::{net::NetSim, runtime::Handle, task::NodeId};
use order::OrderSchema;
use payment::PaymentSchema;
use platform::{
    ports::{Acks, ProducerConfig, Schema},
    Infra, Mutants, Shutdown,
};

use crate::{
    checkers::{self, FinalState, Violation},
    db::{self, DbDisk, SimStore},
    journal::Journal,
    kafka::{KafkaCluster, KafkaModelConfig},
    scenario::{Action, Scenario},
    topology::{self, region_of, NodeSpec, Region, ServiceSpec, SERVICES},
};

/// What one run produced.
#[derive(Debug)]
pub struct Outcome {
    pub violations: Vec<Violation>,
    /// A digest of everything observable, for the determinism check.
    pub trace: Vec<String>,
    pub orders: usize,
    pub delivered: usize,
    pub cancelled: usize,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Messages the simulated network carried.
    pub messages: u64,
    /// Orders the gateway refused (429/503) to a client that does not retry.
    pub refused: usize,
    /// What a recorded run saw (see [`run`]'s `record`).
    pub history: Option<History>,
}

/// What a recorded run saw, for its timeline.
#[derive(Debug, Clone)]
pub struct History {
    /// The faults applied, ms from the start of the run.
    pub faults: Vec<(u64, Action)>,
    pub fault_phase_ms: u64,
    /// Every committed transaction.
    pub commits: Vec<crate::journal::Commit>,
    /// The final orders: id and status.
    pub orders: Vec<(String, String)>,
    /// Per order, the statuses `order.status.changed` holds, in log order.
    pub published: BTreeMap<String, Vec<String>>,
}

struct Node {
    id: NodeId,
    region: Region,
    /// A database node's extra reply latency (ms), for `slow` faults.
    slow_ms: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// The world's nodes by name, for the fault injector.
struct Nodes(BTreeMap<String, Node>);

impl Nodes {
    fn id(&self, name: &str) -> anyhow::Result<NodeId> {
        self.0
            .get(name)
            .map(|n| n.id)
            .ok_or_else(|| anyhow::anyhow!("no node named {name:?}"))
    }
    fn in_region(&self, r: Region) -> Vec<NodeId> {
        self.0
            .values()
            .filter(|n| n.region == r)
            .map(|n| n.id)
            .collect()
    }
}

/// What one instance is given ([`wiring::Env`]): its node, its database node, the Kafka
/// model, the scenario's client settings and mutants, and the fakes' settings and books
/// (shared with the checkers).
#[derive(Clone)]
struct SimEnv {
    service: &'static ServiceSpec,
    node: NodeSpec,
    events: Arc<dyn platform::ports::EventLog>,
    producer: ProducerConfig,
    mutants: Mutants,
    psp: (fakes::psp::PspConfig, fakes::psp::SharedLedger),
    courier: (fakes::courier::CourierConfig, fakes::courier::SharedBooks),
    messenger: (
        fakes::messenger::MessengerConfig,
        fakes::messenger::SharedOutbox,
    ),
    s3: (fakes::s3::S3Config, fakes::s3::SharedObjects),
    moderator: (
        fakes::moderator::ModeratorConfig,
        fakes::moderator::SharedVerdicts,
    ),
    moderation_provider: bool,
    moderation_tuning: moderation::Tuning,
    max_poll_interval: Duration,
    order_limits: order::Limits,
    /// The instance's metrics (nothing scrapes them in the simulation; they are kept so
    /// the services run as in production).
    metrics: Arc<platform::metrics::Registry>,
}

impl wiring::Env for SimEnv {
    fn instance(&self) -> String {
        self.node.name.clone()
    }

    fn listen(&self) -> SocketAddr {
        self.node.addr()
    }

    fn http(&self) -> Option<(SocketAddr, String)> {
        let addr = SocketAddr::new(self.node.ip(), self.service.http_port?);
        Some((addr, format!("http://{addr}")))
    }

    fn urls(&self, service: &str) -> String {
        topology::urls(service)
    }

    fn store<S: Schema>(&self) -> anyhow::Result<Arc<dyn platform::ports::Store<S>>> {
        let db = topology::database_node(self.service)
            .ok_or_else(|| anyhow::anyhow!("{} has no database", self.service.name))?;
        Ok(Arc::new(SimStore::<S>::new(db.addr())))
    }

    fn metrics(&self) -> Arc<platform::metrics::Registry> {
        self.metrics.clone()
    }

    fn mutants(&self) -> Mutants {
        self.mutants
    }

    fn hints(&self) -> anyhow::Result<Arc<dyn platform::ports::Hints>> {
        Ok(Arc::new(crate::redis::SimHints {
            addr: topology::redis().addr(),
        }))
    }

    fn events(&self) -> anyhow::Result<Arc<dyn platform::ports::EventLog>> {
        Ok(self.events.clone())
    }

    fn password_cost(&self) -> user::PasswordCost {
        // Hashing at production cost would dominate a seed's time; a hash's cost does not
        // change any verdict.
        user::PasswordCost::MINIMAL
    }

    fn infra<S: Schema>(&self) -> anyhow::Result<Infra<S>> {
        Ok(Infra {
            instance: self.node.name.clone(),
            store: self.store()?,
            events: self.events.clone(),
            producer: self.producer.clone(),
            mutants: self.mutants,
            max_poll_interval: self.max_poll_interval,
            metrics: self.metrics.clone(),
            tls: None,
        })
    }

    fn consumer_group(&self, group: &str) -> String {
        group.into()
    }

    fn client_rack(&self) -> Option<String> {
        self.producer.client_rack.clone()
    }

    fn psp(&self) -> (fakes::psp::PspConfig, fakes::psp::SharedLedger) {
        self.psp.clone()
    }

    fn courier(&self) -> (fakes::courier::CourierConfig, fakes::courier::SharedBooks) {
        self.courier.clone()
    }

    fn messenger(
        &self,
    ) -> (
        fakes::messenger::MessengerConfig,
        fakes::messenger::SharedOutbox,
    ) {
        self.messenger.clone()
    }

    fn order_limits(&self) -> order::Limits {
        self.order_limits
    }

    fn s3(&self) -> (fakes::s3::S3Config, fakes::s3::SharedObjects) {
        self.s3.clone()
    }

    fn moderator(
        &self,
    ) -> (
        fakes::moderator::ModeratorConfig,
        fakes::moderator::SharedVerdicts,
    ) {
        self.moderator.clone()
    }

    fn moderation_tuning(&self) -> moderation::Tuning {
        self.moderation_tuning
    }

    fn moderation_provider(&self) -> Option<String> {
        self.moderation_provider
            .then(|| topology::urls("moderator"))
    }

    fn object_store(&self) -> media::ObjectStoreConfig {
        let fake = &self.s3.0;
        media::ObjectStoreConfig {
            endpoint: topology::urls("s3"),
            bucket: fake.buckets[0].clone(),
            region: fake.region.clone(),
            access_key: fake.access_key.clone(),
            secret_key: fake.secret_key.clone(),
        }
    }
}

/// `client.rack` of a service's Kafka clients: the scenario's override, or its region's rack.
fn client_rack(scenario: &Scenario, service: &ServiceSpec) -> String {
    scenario
        .topology
        .client_racks
        .get(service.name)
        .cloned()
        .unwrap_or_else(|| service.region.rack().to_owned())
}

/// Runs one instance through the service table's entry point, as production does.
async fn run_instance(env: SimEnv) {
    if let Err(e) = wiring::run_service(env.service, &env, Shutdown::never()).await {
        tracing::error!(node = %env.node.name, error = format!("{e:#}"), "service instance ended");
    }
}

fn db_node<S: Schema>(
    handle: &Handle,
    spec: &NodeSpec,
    disk: DbDisk<S>,
    faults: db::DbFaults,
    journal: &Journal,
) -> NodeId {
    let (addr, name, journal) = (spec.addr(), spec.name.clone(), journal.clone());
    handle
        .create_node()
        .name(spec.name.clone())
        .ip(spec.ip())
        .init(move || {
            let (name, disk, journal) = (name.clone(), disk.clone(), journal.clone());
            db::serve(name, addr, disk, faults.clone(), journal)
        })
        .build()
        .id()
}

/// Runs `scenario` with `mutants` in the current madsim runtime. With `record`, the outcome
/// also holds the run's [`History`]; recording changes nothing in the run itself.
pub async fn run(scenario: &Scenario, mutants: Mutants, record: bool) -> Outcome {
    let handle = Handle::current();
    let started = madsim::time::Instant::now();
    let run_started_ms = platform::store::now_ms();
    let journal = if record {
        Journal::recording()
    } else {
        Journal::default()
    };
    let messages_before = NetSim::current().stat().msg_count;
    let mut kafka_config = scenario.kafka.apply(KafkaModelConfig::seed_default());
    if mutants.unclean_leader_election {
        kafka_config.unclean_leader_election = true;
    }
    if mutants.min_insync_replicas_one {
        kafka_config.min_insync_replicas = 1;
    }
    let kafka = Arc::new(KafkaCluster::start(kafka_config));
    let mut nodes = Nodes(BTreeMap::new());
    for n in kafka
        .broker_nodes()
        .into_iter()
        .chain([kafka.controller_node()])
    {
        let region = region_of(n.ip).unwrap_or(Region::Msk);
        nodes.0.insert(
            n.name.clone(),
            Node {
                id: n.id,
                region,
                slow_ms: None,
            },
        );
    }

    let disks = Disks::default();
    for spec in topology::database_nodes() {
        let slow_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lose = db::DbFaults {
            lose_reply_per_mille: scenario.db_lose_reply_per_mille,
            reply_latency_ms: scenario.db_reply_latency_ms,
            slow_ms: slow_ms.clone(),
        };
        let id = match spec.name.as_str() {
            "orders-db" => db_node(&handle, &spec, disks.orders.clone(), lose, &journal),
            "payments-db" => db_node(&handle, &spec, disks.payments.clone(), lose, &journal),
            "deliveries-db" => db_node(&handle, &spec, disks.deliveries.clone(), lose, &journal),
            "analytics-db" => db_node(&handle, &spec, disks.analytics.clone(), lose, &journal),
            "users-db" => db_node(&handle, &spec, disks.users.clone(), lose, &journal),
            "ads-db" => db_node(&handle, &spec, disks.ads.clone(), lose, &journal),
            "search-db" => db_node(&handle, &spec, disks.search.clone(), lose, &journal),
            "media-db" => db_node(&handle, &spec, disks.media.clone(), lose, &journal),
            "moderation-db" => db_node(&handle, &spec, disks.moderation.clone(), lose, &journal),
            "reports-db" => db_node(&handle, &spec, disks.reports.clone(), lose, &journal),
            "notifications-db" => {
                db_node(&handle, &spec, disks.notifications.clone(), lose, &journal)
            }
            other => panic!("the world has no schema for database {other}"),
        };
        nodes.0.insert(
            spec.name.clone(),
            Node {
                id,
                region: spec.region,
                slow_ms: Some(slow_ms),
            },
        );
    }

    let redis = topology::redis();
    let redis_addr = redis.addr();
    let redis_lose = Arc::new(std::sync::atomic::AtomicU32::new(
        scenario.redis_lose_per_mille,
    ));
    let redis_lose_switch = redis_lose.clone();
    let redis_id = handle
        .create_node()
        .name(redis.name.clone())
        .ip(redis.ip())
        .init(move || {
            let lose = redis_lose.clone();
            async move {
                if let Err(e) = crate::redis::serve(redis_addr, lose).await {
                    tracing::error!(error = %e, "the Redis model stopped");
                }
            }
        })
        .build()
        .id();
    nodes.0.insert(
        redis.name.clone(),
        Node {
            id: redis_id,
            region: redis.region,
            slow_ms: None,
        },
    );

    let p = &scenario.providers;
    let ledger = fakes::psp::SharedLedger::default();
    let psp_config = fakes::psp::PspConfig {
        decline_per_mille: p.psp_decline_per_mille,
        timeout_per_mille: p.psp_timeout_per_mille,
        latency_ms: 20,
        timeout_latency_ms: p.psp_late_answer_ms,
        callback_copies: p.psp_callback_copies,
        callback_delay_ms: p.psp_callback_delay_ms,
    };
    let books = fakes::courier::SharedBooks::default();
    let courier_config = fakes::courier::CourierConfig {
        fail_per_mille: p.courier_fail_per_mille,
        stage_ms: p.courier_stage_ms,
        latency_ms: 20,
    };
    let outbox = fakes::messenger::SharedOutbox::default();
    let messenger_config = fakes::messenger::MessengerConfig {
        fail_per_mille: p.messenger_fail_per_mille,
        late_per_mille: p.messenger_late_per_mille,
        latency_ms: 20,
        late_ms: 5_000,
    };
    let objects = fakes::s3::SharedObjects::default();
    let verdicts = fakes::moderator::SharedVerdicts::default();
    let moderator_config = fakes::moderator::ModeratorConfig {
        fail_per_mille: p.moderator_fail_per_mille,
        late_per_mille: p.moderator_late_per_mille,
        latency_ms: p.moderator_latency_ms,
        late_ms: 5_000,
    };
    let moderation_tuning = moderation::Tuning {
        provider_call: Duration::from_millis(p.moderator_call_timeout_ms),
        ..moderation::Tuning::default()
    };
    let max_poll_interval = scenario.client.max_poll_interval_ms.map_or(
        platform::ports::MAX_POLL_INTERVAL_DEFAULT,
        Duration::from_millis,
    );
    let s3_config = fakes::s3::S3Config::default();

    for service in SERVICES.iter() {
        for node in topology::instances(service) {
            let env = SimEnv {
                service,
                node: node.clone(),
                events: kafka.event_log(),
                producer: mutants.producer(scenario.client.apply(ProducerConfig {
                    client_rack: Some(client_rack(scenario, service)),
                    ..ProducerConfig::default()
                })),
                mutants,
                psp: (psp_config.clone(), ledger.clone()),
                courier: (courier_config.clone(), books.clone()),
                messenger: (messenger_config.clone(), outbox.clone()),
                s3: (s3_config.clone(), objects.clone()),
                moderator: (moderator_config.clone(), verdicts.clone()),
                moderation_provider: p.moderation_provider,
                moderation_tuning,
                max_poll_interval,
                order_limits: scenario.admission.apply(order::Limits::default()),
                metrics: platform::metrics::Registry::new(),
            };
            let id = handle
                .create_node()
                .name(node.name.clone())
                .ip(node.ip())
                .init(move || run_instance(env.clone()))
                .build()
                .id();
            nodes.0.insert(
                node.name,
                Node {
                    id,
                    region: node.region,
                    slow_ms: None,
                },
            );
        }
    }

    // The client registers its customers and places the workload's orders through the
    // gateways (see `workload`).
    let observed: Arc<Mutex<crate::workload::Observed>> = Arc::default();
    let client_node = topology::client();
    let client = handle
        .create_node()
        .name(client_node.name.clone())
        .ip(client_node.ip())
        .build();
    // The customers follow their live notifications until the world has settled.
    let (stop_following, follow_stop) = Shutdown::new();
    let workload = {
        let observed = observed.clone();
        let w = scenario.workload.clone();
        let stop = follow_stop.clone();
        client.spawn(async move { crate::workload::run(w, observed, stop).await })
    };

    // Fault phase.
    let fault_phase = Duration::from_secs(scenario.fault_phase_s);
    let timeline = scenario.schedule(handle.seed());
    let mut applied = Vec::new();
    let mut trace = Vec::new();
    let mut killed = Vec::new();
    for (at_ms, action) in timeline {
        let now = started.elapsed();
        let at = Duration::from_millis(at_ms);
        if at > now {
            madsim::time::sleep(at - now).await;
        }
        trace.push(format!("{at_ms}ms {action:?}"));
        applied.push((started.elapsed().as_millis() as u64, action.clone()));
        if let Err(e) = apply(&handle, &nodes, &kafka, &action, &mut killed) {
            panic!(
                "scenario {}: fault {action:?} cannot apply: {e}",
                scenario.name
            );
        }
    }
    if started.elapsed() < fault_phase {
        madsim::time::sleep(fault_phase - started.elapsed()).await;
    }

    // Heal: faults off, everything killed comes back; then wait for liveness.
    let heal_ms = platform::store::now_ms();
    redis_lose_switch.store(0, std::sync::atomic::Ordering::SeqCst);
    let _ = apply(&handle, &nodes, &kafka, &Action::HealNetwork, &mut killed);
    for id in killed.drain(..) {
        handle.restart(id);
    }
    let heal_deadline = started.elapsed() + Duration::from_secs(scenario.heal_phase_s_max);
    let mut workload = Some(workload);
    let mut workload_failed = None;
    loop {
        if workload.as_ref().is_some_and(|w| w.is_finished()) {
            if let Some(Some(Err(e))) = workload.take().map(futures::FutureExt::now_or_never) {
                workload_failed = Some(format!("the client's workload failed: {e}"));
            }
        }
        let settled = workload.is_none()
            && disks.settled()
            && results_consumed(&kafka)
            && events_consumed(&kafka, order::ORDER_STATUS_TOPIC, &[notification::GROUP])
            && events_consumed(
                &kafka,
                platform::topics::MODERATION_RESULTS,
                &[notification::GROUP],
            )
            && disks.notifications_delivered(&observed);
        if settled || started.elapsed() >= heal_deadline {
            break;
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }

    stop_following.trigger();

    // After heal, the client looks every ad up through the gateways' search.
    let ads = disks.ads();
    let lookups = {
        let ads: Vec<ad::Ad> = ads.values().map(|(_, a)| a.clone()).collect();
        client
            .spawn(async move { crate::workload::final_searches(&ads).await })
            .await
            .unwrap_or_default()
    };
    let observed = observed.lock().map(|o| o.clone()).unwrap_or_default();
    let state = FinalState {
        search_lookups: lookups,
        orders: disks.orders(),
        acknowledged: observed.acknowledged,
        refused: observed.refused,
        foreign_reads: observed.foreign_reads,
        stale_not_modified: observed.stale_not_modified,
        acknowledged_ads: observed.ads,
        ads,
        ad_events: kafka.log_snapshot(ad::AD_CHANGED_TOPIC),
        users: disks.users(),
        photos: disks.photos(),
        objects: objects
            .lock()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), (v.bytes.len() as i64, v.content_type.clone())))
                    .collect()
            })
            .unwrap_or_default(),
        bucket: s3_config.buckets[0].clone(),
        attached_photos: observed.photos,
        uploads_refused: observed.uploads_refused,
        acknowledged_reports: observed.reports,
        reports: disks.reports(),
        blocked_users: disks
            .users
            .lock()
            .map(|s| s.model.blocked.keys().cloned().collect())
            .unwrap_or_default(),
        decisions: disks.decisions(),
        task_events: kafka.log_snapshot(platform::topics::MODERATION_TASKS),
        result_events: kafka.log_snapshot(platform::topics::MODERATION_RESULTS),
        requests: disks.requests(),
        workload_done: workload.is_none(),
        ledger: ledger.lock().map(|l| l.by_order()).unwrap_or_default(),
        shipments: books.lock().map(|b| b.fates_by_order()).unwrap_or_default(),
        order_events: kafka.log_snapshot(order::ORDER_STATUS_TOPIC),
        analytics: disks.mart(),
        feeds: disks.feeds(),
        outgoing: disks.outgoing(),
        messages_delivered: outbox.lock().map(|o| o.by_reference()).unwrap_or_default(),
        received: observed.received,
        live_sessions: observed.sessions,
        order_attempts: observed.order_attempts,
        order_traces: observed.order_traces,
        psp_traced: ledger.lock().map(|l| l.traced.clone()).unwrap_or_default(),
        courier_traced: books.lock().map(|b| b.traced.clone()).unwrap_or_default(),
        messenger_traced: outbox.lock().map(|o| o.traced.clone()).unwrap_or_default(),
        slow_windows: slow_windows(&applied, run_started_ms, heal_ms),
        // Live updates are timed once nothing disturbs them: from startup in a run without
        // faults, else from heal; never when database replies are lost (a commit whose
        // reply is lost announces nothing, and waits for a position check).
        quiet_from_ms: (scenario.db_lose_reply_per_mille == 0).then(|| {
            if applied.is_empty() {
                run_started_ms + crate::checkers::notifications::HEAL_GRACE_MS
            } else {
                heal_ms + crate::checkers::notifications::HEAL_GRACE_MS
            }
        }),
        lost_acknowledged: kafka
            .lost_acknowledged_writes(Acks::All)
            .into_iter()
            .chain(kafka.lost_acknowledged_writes(Acks::Leader))
            .map(|w| format!("{}:{}@{} key {}", w.topic, w.partition, w.offset, w.key))
            .collect(),
    };
    let selected: Vec<&str> = match &scenario.checkers {
        Some(names) => names.iter().map(String::as_str).collect(),
        None => checkers::names(),
    };
    let mut violations = checkers::check(&state, &selected);
    if let Some(detail) = workload_failed {
        // A client that died mid-run saw less than it should: the run proves nothing.
        violations.push(checkers::Violation {
            checker: "workload",
            detail,
        });
    }
    let orders = &state.orders;
    let mut delivered = 0;
    let mut cancelled = 0;
    for (id, o) in orders {
        let status = o.status.as_str();
        match status {
            "DELIVERED" => delivered += 1,
            "CANCELLED" => cancelled += 1,
            _ => {}
        }
        trace.push(format!("{id} {status}"));
    }
    trace.push(format!(
        "{} photo(s) attached, {} READY",
        state.attached_photos.len(),
        state.photos.values().filter(|p| p.state == "READY").count()
    ));
    trace.push(format!(
        "{} report(s) accepted, {} decided, {} banned",
        state.acknowledged_reports.len(),
        state
            .reports
            .values()
            .filter(|r| r.status == "DECIDED")
            .count(),
        state
            .reports
            .values()
            .filter(|r| r.decision == "BAN")
            .count()
    ));
    {
        let updates: usize = state.feeds.values().map(|(_, u)| u.len()).sum();
        let received = state
            .received
            .iter()
            .filter(|r| notification::KINDS.contains(&r.event.as_str()))
            .count();
        let sessions: std::collections::BTreeSet<(u32, u32)> = state
            .received
            .iter()
            .map(|r| (r.customer, r.session))
            .collect();
        let instances: std::collections::BTreeSet<&str> =
            state.received.iter().map(|r| r.instance.as_str()).collect();
        trace.push(format!(
            "{updates} update(s) in feeds, {received} received in {} session(s) on {} instance(s)",
            sessions.len(),
            instances.len()
        ));
    }
    {
        let asked = verdicts.lock().map(|v| v.clone()).unwrap_or_default();
        trace.push(format!(
            "{} task(s) asked of the moderation provider, {} more than once",
            asked.len(),
            asked.values().filter(|answers| answers.len() > 1).count()
        ));
    }
    for v in &violations {
        trace.push(format!("violation {v}"));
    }
    let history = record.then(|| History {
        faults: applied,
        fault_phase_ms: fault_phase.as_millis() as u64,
        commits: journal.commits(),
        orders: orders
            .iter()
            .map(|(id, o)| (id.clone(), o.status.as_str().to_owned()))
            .collect(),
        published: published_statuses(&state.order_events),
    });
    Outcome {
        violations,
        trace,
        orders: orders.len(),
        delivered,
        cancelled,
        simulated: started.elapsed(),
        messages: NetSim::current().stat().msg_count - messages_before,
        refused: state.refused.len(),
        history,
    }
}

/// Per order, the `status` of each of its `order.status.changed` records, in log order.
fn published_statuses(
    partitions: &[Vec<platform::ports::ConsumedRecord>],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in partitions.iter().flatten() {
        let status = serde_json::from_slice::<serde_json::Value>(&r.payload)
            .ok()
            .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        out.entry(r.key.clone()).or_default().push(status);
    }
    out
}

/// The databases' durable state, one per service schema.
#[derive(Default)]
struct Disks {
    orders: DbDisk<OrderSchema>,
    payments: DbDisk<PaymentSchema>,
    deliveries: DbDisk<DeliverySchema>,
    analytics: DbDisk<MartSchema>,
    users: DbDisk<user::UserSchema>,
    ads: DbDisk<ad::AdSchema>,
    search: DbDisk<search::SearchSchema>,
    media: DbDisk<media::MediaSchema>,
    moderation: DbDisk<moderation::ModerationSchema>,
    reports: DbDisk<report::ReportSchema>,
    notifications: DbDisk<notification::NotificationSchema>,
}

impl Disks {
    fn orders(&self) -> BTreeMap<String, order::Order> {
        self.orders
            .lock()
            .map(|s| {
                s.model
                    .orders
                    .iter()
                    .map(|(id, o)| (id.clone(), o.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Create requests' idempotency keys → the order each made.
    fn requests(&self) -> BTreeMap<String, String> {
        self.orders
            .lock()
            .map(|s| s.model.requests.clone())
            .unwrap_or_default()
    }

    /// Every ad with its version.
    fn ads(&self) -> BTreeMap<String, (i64, ad::Ad)> {
        self.ads
            .lock()
            .map(|s| {
                s.model
                    .ads
                    .iter()
                    .map(|(id, a)| (id.clone(), (a.version, a.value.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every account: user id → the email as registered.
    fn users(&self) -> BTreeMap<String, String> {
        self.users
            .lock()
            .map(|s| {
                s.model
                    .users
                    .iter()
                    .map(|(id, u)| (id.clone(), u.value.email.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every report, by id.
    fn reports(&self) -> BTreeMap<String, report::Report> {
        self.reports
            .lock()
            .map(|s| s.model.reports.clone())
            .unwrap_or_default()
    }

    /// Every decision the moderation workers made.
    fn decisions(&self) -> Vec<moderation::Decision> {
        self.moderation
            .lock()
            .map(|s| s.model.decisions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every photo of the media service, by id.
    fn photos(&self) -> BTreeMap<String, media::Photo> {
        self.media
            .lock()
            .map(|s| s.model.photos.clone())
            .unwrap_or_default()
    }

    fn mart(&self) -> BTreeMap<String, i64> {
        self.analytics
            .lock()
            .map(|s| s.model.clone())
            .unwrap_or_default()
    }

    /// Every recipient's feed: its epoch and updates by seq.
    fn feeds(&self) -> BTreeMap<String, (String, Vec<notification::Update>)> {
        self.notifications
            .lock()
            .map(|s| {
                let m = &s.model;
                let mut out: BTreeMap<String, (String, Vec<notification::Update>)> = m
                    .feeds
                    .iter()
                    .map(|(r, f)| (r.clone(), (f.epoch.clone(), Vec::new())))
                    .collect();
                for ((r, _), u) in &m.updates {
                    out.entry(r.clone()).or_default().1.push(u.clone());
                }
                out
            })
            .unwrap_or_default()
    }

    /// The notification service's messages by key.
    fn outgoing(&self) -> BTreeMap<String, notification::Outgoing> {
        self.notifications
            .lock()
            .map(|s| {
                s.model
                    .outgoing
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether each buyer's sessions got their feed to its end (whether the feeds are
    /// complete is the checker's question; [`events_consumed`] waits for the consumer).
    fn notifications_delivered(&self, observed: &Mutex<crate::workload::Observed>) -> bool {
        let feeds = self.feeds();
        let followers = observed
            .lock()
            .map(|o| o.followers.clone())
            .unwrap_or_default();
        feeds.iter().all(|(recipient, (epoch, updates))| {
            let end = format!("{epoch}:{}", updates.last().map_or(0, |u| u.seq));
            followers
                .values()
                .any(|(user, last)| user == recipient && *last == end)
        })
    }

    /// See [`checkers::settled`].
    fn settled(&self) -> bool {
        let outbox_drained = self
            .orders
            .lock()
            .is_ok_and(|s| s.platform.outbox_pending(1).is_empty());
        let payments_done = self
            .payments
            .lock()
            .is_ok_and(|s| s.platform.list_work(payment::store::PAYMENTS, 1).is_empty());
        checkers::settled(&self.orders(), outbox_drained, payments_done, &self.mart())
            && self.search_caught_up()
            && self.reports().values().all(|r| r.status == "DECIDED")
            && self.outgoing().values().all(|m| !m.is_pending())
    }

    /// Whether the search index holds every ad at its current version.
    fn search_caught_up(&self) -> bool {
        let indexed: BTreeMap<String, i64> = self
            .search
            .lock()
            .map(|s| {
                s.model
                    .values()
                    .map(|d| (d.ad_id.clone(), d.version))
                    .collect()
            })
            .unwrap_or_default();
        self.ads()
            .iter()
            .all(|(id, (version, _))| indexed.get(id) == Some(version))
    }
}

/// Whether every consumer group of `moderation.results` (the report, ad and user services)
/// has committed past the last result, so every decision is in effect.
fn results_consumed(kafka: &KafkaCluster) -> bool {
    events_consumed(
        kafka,
        platform::topics::MODERATION_RESULTS,
        &[report::GROUP, ad::MODERATION_GROUP, user::MODERATION_GROUP],
    )
}

/// Whether each of `groups` has committed past the last record of every partition of
/// `topic`.
fn events_consumed(kafka: &KafkaCluster, topic: &str, groups: &[&str]) -> bool {
    let ends: Vec<(i32, i64)> = kafka
        .log_snapshot(topic)
        .iter()
        .filter_map(|p| p.last().map(|r| (r.partition, r.offset + 1)))
        .collect();
    groups.iter().all(|group| {
        let committed = kafka.committed_offsets(group);
        ends.iter().all(|(partition, end)| {
            committed
                .iter()
                .any(|(tp, o)| tp.topic == topic && tp.partition == *partition && o >= end)
        })
    })
}

/// When database nodes were slow: from each `slow` fault to the next network heal (or the
/// heal phase), in ms since the epoch. `applied` holds ms since `run_started_ms`.
fn slow_windows(
    applied: &[(u64, Action)],
    run_started_ms: u64,
    heal_ms: u64,
) -> Vec<crate::checkers::fail_fast::SlowWindow> {
    let mut out = Vec::new();
    for (i, (at, action)) in applied.iter().enumerate() {
        let Action::Slow { node, latency_ms } = action else {
            continue;
        };
        if *latency_ms == 0 {
            continue;
        }
        let to_ms = applied[i + 1..]
            .iter()
            .find(|(_, a)| match a {
                Action::HealNetwork => true,
                Action::Slow { node: n, .. } => n == node,
                _ => false,
            })
            .map_or(heal_ms, |(t, _)| run_started_ms + t);
        out.push(crate::checkers::fail_fast::SlowWindow {
            node: node.clone(),
            from_ms: run_started_ms + at,
            to_ms,
        });
    }
    out
}

fn apply(
    handle: &Handle,
    nodes: &Nodes,
    kafka: &KafkaCluster,
    action: &Action,
    killed: &mut Vec<NodeId>,
) -> anyhow::Result<()> {
    let net = NetSim::current();
    let (msk, nsk) = (nodes.in_region(Region::Msk), nodes.in_region(Region::Nsk));
    match action {
        Action::Kill { node } => {
            for name in topology::expand(node) {
                let id = nodes.id(&name)?;
                handle.kill(id);
                if !killed.contains(&id) {
                    killed.push(id);
                }
            }
        }
        Action::PowerOff { node } => {
            for name in topology::expand(node) {
                let id = nodes.id(&name)?;
                if kafka.power_off(&name).is_none() {
                    handle.kill(id);
                }
                if !killed.contains(&id) {
                    killed.push(id);
                }
            }
        }
        Action::Restart { node } => {
            for name in topology::expand(node) {
                let id = nodes.id(&name)?;
                // A restart is a crash and a start. Killing first also covers a node that is
                // running (two overlapping crash episodes restart it twice): madsim's restart
                // alone would keep the old incarnation's sockets, and the new one could not
                // bind.
                handle.kill(id);
                handle.restart(id);
                killed.retain(|k| *k != id);
            }
        }
        Action::Isolate { node } => {
            for name in topology::expand(node) {
                net.clog_node(nodes.id(&name)?);
            }
        }
        Action::PartitionRegions => {
            for &a in &msk {
                for &b in &nsk {
                    net.clog_link(a, b);
                    net.clog_link(b, a);
                }
            }
        }
        Action::PartitionOneWay { from } => {
            let (src, dst) = match from.as_str() {
                "msk" => (&msk, &nsk),
                "nsk" => (&nsk, &msk),
                other => anyhow::bail!("unknown region {other:?}"),
            };
            for &a in src {
                for &b in dst {
                    net.clog_link(a, b);
                }
            }
        }
        Action::Slow { node, latency_ms } => {
            for name in topology::expand(node) {
                let slow = nodes
                    .0
                    .get(&name)
                    .and_then(|n| n.slow_ms.as_ref())
                    .ok_or_else(|| anyhow::anyhow!("{name:?} is not a database node"))?;
                slow.store(*latency_ms, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Action::HealNetwork => {
            for slow in nodes.0.values().filter_map(|n| n.slow_ms.as_ref()) {
                slow.store(0, std::sync::atomic::Ordering::SeqCst);
            }
            for &a in &msk {
                for &b in &nsk {
                    net.unclog_link(a, b);
                    net.unclog_link(b, a);
                }
            }
            for node in nodes.0.values() {
                net.unclog_node(node.id);
            }
        }
    }
    Ok(())
}
