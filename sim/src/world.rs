//! Builds the simulated marketplace, runs a scenario's fault phase, heals, waits for
//! liveness, and hands the final state to the checkers.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use madsim::{net::NetSim, runtime::Handle, task::NodeId};
use platform::{
    http::HttpClient,
    ports::{Acks, ProducerConfig},
    retry::{retry, RetryPolicy},
    store::MemoryState,
    Infra, Mutants, Shutdown,
};

use crate::{
    checkers::{self, FinalState, Violation},
    db::{self, DbDisk, SimStore},
    kafka::{KafkaCluster, KafkaModelConfig},
    scenario::{Action, Scenario},
    topology::{self, region_of, NodeSpec, Region},
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
}

struct Node {
    id: NodeId,
    region: Region,
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

fn service_infra(
    scenario: &Scenario,
    db: &NodeSpec,
    kafka: &KafkaCluster,
    mutants: Mutants,
    service: &NodeSpec,
) -> Infra {
    Infra {
        store: Arc::new(SimStore { addr: db.addr() }),
        events: kafka.event_log(),
        producer: mutants.producer(scenario.client.apply(ProducerConfig {
            client_rack: Some(client_rack(scenario, service)),
            ..ProducerConfig::default()
        })),
        mutants,
    }
}

/// `client.rack` of a service's Kafka clients: the scenario's override, or its region's rack.
fn client_rack(scenario: &Scenario, service: &NodeSpec) -> String {
    if let Some(rack) = scenario.topology.client_racks.get(service.name) {
        return rack.clone();
    }
    match service.region {
        Region::Msk => "msk".into(),
        Region::Nsk => "nsk".into(),
    }
}

fn db_node(handle: &Handle, spec: NodeSpec, disk: DbDisk, lose_reply_per_mille: u32) -> NodeId {
    handle
        .create_node()
        .name(spec.name)
        .ip(spec.ip())
        .init(move || db::serve(spec.addr(), disk.clone(), lose_reply_per_mille))
        .build()
        .id()
}

/// Runs `scenario` with `mutants` in the current madsim runtime.
pub async fn run(scenario: &Scenario, mutants: Mutants) -> Outcome {
    let handle = Handle::current();
    let started = madsim::time::Instant::now();
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
        nodes.0.insert(n.name.clone(), Node { id: n.id, region });
    }

    let disks: BTreeMap<&str, DbDisk> = topology::DATABASES
        .into_iter()
        .map(|spec| (spec.name, DbDisk::default()))
        .collect();
    for spec in topology::DATABASES {
        let id = db_node(
            &handle,
            spec,
            disks[spec.name].clone(),
            scenario.db_lose_reply_per_mille,
        );
        nodes.0.insert(
            spec.name.into(),
            Node {
                id,
                region: spec.region,
            },
        );
    }

    let p = &scenario.providers;
    let ledger = fakes::psp::SharedLedger::default();
    let psp_config = fakes::psp::PspConfig {
        decline_per_mille: p.psp_decline_per_mille,
        timeout_per_mille: p.psp_timeout_per_mille,
        latency_ms: 20,
        timeout_latency_ms: 10_000,
        callback_copies: p.psp_callback_copies,
        callback_delay_ms: 300,
    };
    let books = fakes::courier::SharedBooks::default();
    let courier_config = fakes::courier::CourierConfig {
        fail_per_mille: p.courier_fail_per_mille,
        stage_ms: p.courier_stage_ms,
        latency_ms: 20,
    };

    let mut add = |spec: NodeSpec,
                   init: Box<
        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync,
    >| {
        let id = handle
            .create_node()
            .name(spec.name)
            .ip(spec.ip())
            .init(init)
            .build()
            .id();
        nodes.0.insert(
            spec.name.into(),
            Node {
                id,
                region: spec.region,
            },
        );
    };
    {
        let (ledger, config) = (ledger.clone(), psp_config.clone());
        add(
            topology::PSP,
            Box::new(move || {
                let (ledger, config) = (ledger.clone(), config.clone());
                Box::pin(async move {
                    match tokio::net::TcpListener::bind(topology::PSP.addr()).await {
                        Ok(l) => fakes::psp::run(l, config, ledger, Shutdown::never()).await,
                        Err(e) => tracing::error!(error = %e, "psp cannot bind"),
                    }
                })
            }),
        );
    }
    {
        let (books, config) = (books.clone(), courier_config.clone());
        add(
            topology::COURIER,
            Box::new(move || {
                let (books, config) = (books.clone(), config.clone());
                Box::pin(async move {
                    match tokio::net::TcpListener::bind(topology::COURIER.addr()).await {
                        Ok(l) => fakes::courier::run(l, config, books, Shutdown::never()).await,
                        Err(e) => tracing::error!(error = %e, "courier cannot bind"),
                    }
                })
            }),
        );
    }
    {
        let infra = service_infra(
            scenario,
            &topology::PAYMENTS_DB,
            &kafka,
            mutants,
            &topology::PAYMENT,
        );
        add(
            topology::PAYMENT,
            Box::new(move || {
                let config = payment::Config {
                    listen: topology::PAYMENT.addr(),
                    psp_url: topology::PSP.url(),
                    callback_listen: Some(topology::PAYMENT_CALLBACKS.addr()),
                    callback_url: Some(format!(
                        "{}/v1/psp/callbacks",
                        topology::PAYMENT_CALLBACKS.url()
                    )),
                    psp_timeout: Duration::from_secs(2),
                    worker_poll: Duration::from_millis(500),
                };
                let infra = infra.clone();
                Box::pin(async move {
                    if let Err(e) = payment::run(config, infra, Shutdown::never()).await {
                        tracing::error!(error = %e, "payment ended");
                    }
                })
            }),
        );
    }
    {
        let infra = service_infra(
            scenario,
            &topology::DELIVERIES_DB,
            &kafka,
            mutants,
            &topology::DELIVERY,
        );
        add(
            topology::DELIVERY,
            Box::new(move || {
                let config = delivery::Config {
                    listen: topology::DELIVERY.addr(),
                    courier_url: topology::COURIER.url(),
                    courier_timeout: Duration::from_secs(2),
                    worker_poll: Duration::from_millis(500),
                };
                let infra = infra.clone();
                Box::pin(async move {
                    if let Err(e) = delivery::run(config, infra, Shutdown::never()).await {
                        tracing::error!(error = %e, "delivery ended");
                    }
                })
            }),
        );
    }
    {
        let infra = service_infra(
            scenario,
            &topology::ORDERS_DB,
            &kafka,
            mutants,
            &topology::ORDER,
        );
        add(
            topology::ORDER,
            Box::new(move || {
                let config = order::Config::new(
                    topology::ORDER.addr(),
                    topology::PAYMENT.url(),
                    topology::DELIVERY.url(),
                );
                let infra = infra.clone();
                Box::pin(async move {
                    if let Err(e) = order::run(config, infra, Shutdown::never()).await {
                        tracing::error!(error = %e, "order ended");
                    }
                })
            }),
        );
    }
    {
        let infra = service_infra(
            scenario,
            &topology::ANALYTICS_DB,
            &kafka,
            mutants,
            &topology::ANALYTICS,
        );
        let rack = client_rack(scenario, &topology::ANALYTICS);
        add(
            topology::ANALYTICS,
            Box::new(move || {
                let config = analytics::Config {
                    group_id: analytics::GROUP.into(),
                    client_rack: Some(rack.clone()),
                };
                let infra = infra.clone();
                Box::pin(async move {
                    if let Err(e) = analytics::run(config, infra, Shutdown::never()).await {
                        tracing::error!(error = %e, "analytics ended");
                    }
                })
            }),
        );
    }
    add(
        topology::GATEWAY,
        Box::new(|| {
            Box::pin(async {
                let config = gateway::Config {
                    order_url: topology::ORDER.url(),
                };
                match tokio::net::TcpListener::bind(topology::GATEWAY.addr()).await {
                    Ok(l) => {
                        if let Err(e) = gateway::run(l, config, Shutdown::never()).await {
                            tracing::error!(error = %e, "gateway ended");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "gateway cannot bind"),
                }
            })
        }),
    );

    // The client places the workload's orders through the gateway, each retried with its
    // idempotency key until acknowledged.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = handle
        .create_node()
        .name(topology::CLIENT.name)
        .ip(topology::CLIENT.ip())
        .build();
    let workload = {
        let (acknowledged, w) = (acknowledged.clone(), scenario.workload.clone());
        client.spawn(async move { place_orders(w.orders, w.gap_ms, acknowledged).await })
    };

    // Fault phase.
    let fault_phase = Duration::from_secs(scenario.fault_phase_s);
    let mut timeline: Vec<(u64, Action)> = scenario
        .faults
        .iter()
        .map(|f| {
            (
                f.at_ms[0] + madsim::rand::random::<u64>() % (f.at_ms[1] - f.at_ms[0] + 1),
                f.action.clone(),
            )
        })
        .collect();
    if let Some(swarm) = &scenario.swarm {
        timeline.extend(swarm.draw(fault_phase));
    }
    timeline.sort_by_key(|(t, _)| *t);
    let mut trace = Vec::new();
    let mut killed = Vec::new();
    for (at_ms, action) in timeline {
        let now = started.elapsed();
        let at = Duration::from_millis(at_ms);
        if at > now {
            madsim::time::sleep(at - now).await;
        }
        trace.push(format!("{at_ms}ms {action:?}"));
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
    let _ = apply(&handle, &nodes, &kafka, &Action::HealNetwork, &mut killed);
    for id in killed.drain(..) {
        handle.restart(id);
    }
    let heal_deadline = started.elapsed() + Duration::from_secs(scenario.heal_phase_s_max);
    let mut workload = Some(workload);
    loop {
        if workload.as_ref().is_some_and(|w| w.is_finished()) {
            workload = None;
        }
        let settled = workload.is_none()
            && checkers::settled(
                &lock(&disks["orders-db"]),
                &lock(&disks["payments-db"]),
                &lock(&disks["analytics-db"]),
            );
        if settled || started.elapsed() >= heal_deadline {
            break;
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }

    let state = FinalState {
        orders: lock(&disks["orders-db"]),
        payments: lock(&disks["payments-db"]),
        acknowledged: acknowledged.lock().map(|v| v.clone()).unwrap_or_default(),
        workload_done: workload.is_none(),
        ledger: ledger.lock().map(|l| l.by_order()).unwrap_or_default(),
        order_events: kafka.log_snapshot(order::ORDER_STATUS_TOPIC),
        analytics: lock(&disks["analytics-db"]),
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
    let violations = checkers::check(&state, &selected);
    let orders = state.orders.all("orders");
    let mut delivered = 0;
    let mut cancelled = 0;
    for (id, v) in &orders {
        let status = v
            .body
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("?")
            .to_owned();
        match status.as_str() {
            "DELIVERED" => delivered += 1,
            "CANCELLED" => cancelled += 1,
            _ => {}
        }
        trace.push(format!("{id} {status}"));
    }
    for v in &violations {
        trace.push(format!("violation {v}"));
    }
    Outcome {
        violations,
        trace,
        orders: orders.len(),
        delivered,
        cancelled,
        simulated: started.elapsed(),
    }
}

fn lock(disk: &DbDisk) -> MemoryState {
    disk.lock().map(|s| s.clone()).unwrap_or_default()
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
            let id = nodes.id(node)?;
            handle.kill(id);
            if !killed.contains(&id) {
                killed.push(id);
            }
        }
        Action::PowerOff { node } => {
            let id = nodes.id(node)?;
            if kafka.power_off(node).is_none() {
                handle.kill(id);
            }
            if !killed.contains(&id) {
                killed.push(id);
            }
        }
        Action::Restart { node } => {
            let id = nodes.id(node)?;
            // A restart is a crash and a start. Killing first also covers a node that is
            // running (two overlapping crash episodes restart it twice): madsim's restart
            // alone would keep the old incarnation's sockets, and the new one could not bind.
            handle.kill(id);
            handle.restart(id);
            killed.retain(|k| *k != id);
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
        Action::HealNetwork => {
            for &a in &msk {
                for &b in &nsk {
                    net.unclog_link(a, b);
                    net.unclog_link(b, a);
                }
            }
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Created {
    order_id: String,
}

async fn place_orders(count: u32, gap_ms: u64, acknowledged: Arc<Mutex<Vec<String>>>) {
    let mut tasks = Vec::new();
    for i in 0..count {
        let acknowledged = acknowledged.clone();
        tasks.push(madsim::task::spawn(async move {
            let client = HttpClient::new(Duration::from_secs(5));
            let url = format!("{}/v1/orders", topology::GATEWAY.url());
            let key = format!("workload-{i}");
            let body = serde_json::json!({
                "customer_id": format!("customer-{}", i % 7),
                "item": format!("item-{i}"),
                "amount_minor": 1_000 + i64::from(i) * 10,
                "currency": "RUB",
            });
            let policy = RetryPolicy {
                deadline: Duration::from_secs(60),
                attempts_max: 50,
                ..RetryPolicy::rpc()
            };
            let headers = [("idempotency-key", key.as_str())];
            let r = retry(
                &policy,
                "place order",
                &Shutdown::never(),
                |e: &platform::http::HttpError| e.is_transient(),
                |_| client.post_json::<_, Created>(&url, &headers, &body),
            )
            .await;
            if let Ok(c) = r {
                if let Ok(mut v) = acknowledged.lock() {
                    v.push(c.order_id);
                }
            }
        }));
        madsim::time::sleep(Duration::from_millis(gap_ms)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}
