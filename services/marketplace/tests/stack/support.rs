use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use gateway::{OrderView, SessionView};
use marketplace::{Service, Settings};
use platform::{http::HttpClient, Shutdown};

/// A running stack; dropping it stops every service.
pub struct Stack {
    pub settings: Settings,
    pub gateway: String,
    /// The admin listener's URL (`/healthz`, `/readyz`, `/metrics`).
    pub admin: String,
    /// A session of the stack's first user, who places the orders of [`Stack::place_order`].
    pub session: SessionView,
    /// An ad of another user (the seller), which [`Stack::place_order`] buys.
    pub listing: gateway::AdView,
    _trigger: platform::shutdown::ShutdownTrigger,
}

/// A password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// A loopback port for a service to listen on. An ephemeral port (`bind` to port 0, then
/// released) can be taken by any outgoing connection before the service binds it — the
/// Kafka and PostgreSQL clients open many — so ports come from just below the kernel's
/// ephemeral range instead, where connections never get their local port. A counter keeps
/// the stacks of this process apart (the tests run in parallel); a port something else
/// listens on is skipped.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPAN: u32 = 8_000;
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let first = ephemeral_low.saturating_sub(SPAN).max(10_000);
    // Different test processes start at different places in the span.
    let offset = std::process::id() * 97;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + (offset + n) % (ephemeral_low - first);
        let addr = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("a port")));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in {first}..{ephemeral_low}");
}

/// Starts every service with fresh schemas; `tune` adjusts the fakes.
pub async fn start(tune: impl FnOnce(&mut Settings)) -> Stack {
    start_without(&[], tune).await
}

/// [`start`] without the services named in `left_out` (a test runs them in processes of
/// their own).
pub async fn start_without(left_out: &[&str], tune: impl FnOnce(&mut Settings)) -> Stack {
    let mut settings = Settings::from_env().expect("settings");
    // Photos go to the real S3-compatible server, which checks signatures.
    assert!(
        std::env::var_os("S3_ENDPOINT").is_some(),
        "S3_ENDPOINT is unset: run `eval \"$(ci/infra/up.sh)\"`"
    );
    // A schema prefix unique across runs of the test: OS randomness is what is wanted here.
    #[allow(clippy::disallowed_methods)]
    let run = uuid::Uuid::new_v4().simple().to_string();
    settings.schema_prefix = format!("t{}_", &run[..12]);
    // The notification group starts at the end of its topics: their history on a
    // long-lived cluster (a benchmark's tens of thousands of events) is not this test's.
    let events = adapters::KafkaEventLog::connect(adapters::KafkaConfig::new(
        settings.kafka_bootstrap.clone(),
    ))
    .await
    .expect("the cluster answers (is `ci/infra/up.sh` running?)");
    events.ensure_listed_topics().await.expect("topics");
    events
        .start_group_at_end(
            &format!("{}{}", settings.schema_prefix, notification::GROUP),
            &[
                platform::topics::ORDER_STATUS_CHANGED,
                platform::topics::MODERATION_RESULTS,
            ],
        )
        .await
        .expect("the notification group starts at the end");
    for addr in settings.listen.values_mut() {
        *addr = free_addr();
    }
    settings.psp.decline_per_mille = 0;
    settings.psp.timeout_per_mille = 0;
    settings.courier.fail_per_mille = 0;
    settings.courier.stage_ms = 200;
    tune(&mut settings);
    let (trigger, shutdown) = Shutdown::new();
    let services: Vec<Service> = Service::all()
        .into_iter()
        .filter(|s| !left_out.contains(&s.0.name))
        .collect();
    // The process's admin listener, as `marketplace serve` runs it.
    let metrics = marketplace::admin::Metrics::new();
    let readiness = std::sync::Arc::new(
        marketplace::admin::Readiness::new(&services, &settings).expect("readiness checks"),
    );
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the admin listener");
    let admin = format!(
        "http://{}",
        admin_listener.local_addr().expect("admin address")
    );
    tokio::spawn(platform::http::serve(
        admin_listener,
        marketplace::admin::router(readiness.clone(), metrics.clone()),
        shutdown.clone(),
    ));
    marketplace::start(&services, &settings, shutdown, &metrics)
        .await
        .expect("the stack starts (is `ci/infra/up.sh` running?)");
    readiness.started();
    // tonic binds its listeners inside its serve task: wait until every port accepts.
    for addr in [
        "order",
        "payment",
        "delivery",
        "user",
        "ad",
        "media",
        "gateway",
        "notification",
        "notification-http",
    ]
    .into_iter()
    .filter(|s| !left_out.iter().any(|l| s.split('-').next() == Some(*l)))
    .map(|s| listen(&settings, s))
    {
        accepting(addr, Duration::from_secs(20)).await;
    }
    let gateway = format!("http://{}", listen(&settings, "gateway"));
    let client = HttpClient::new(Duration::from_secs(10));
    // The gateway fetches the user service's keys once both run.
    let started = tokio::time::Instant::now();
    loop {
        let jwks: Result<auth::Jwks, _> = client
            .get_json(&format!("{gateway}/.well-known/jwks.json"))
            .await;
        if jwks.is_ok_and(|k| !k.keys.is_empty()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway never got the signing keys"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session = register_and_login(&gateway, "first@stack.test").await;
    let seller = register_and_login(&gateway, "seller@stack.test").await;
    let ad = serde_json::json!({
        "title": "Lamp", "price": {"amount_minor": 990, "currency": "RUB"},
        "category": "home", "region": "msk",
    });
    let listing = client
        .post_json(
            &format!("{gateway}/v1/ads"),
            &[("authorization", &bearer(&seller))],
            &ad,
        )
        .await
        .expect("the seller's ad");
    Stack {
        settings,
        gateway,
        admin,
        session,
        listing,
        _trigger: trigger,
    }
}

/// Another gateway beside the stack's, as another instance would run (its cache group named
/// after `name`); with `tls`, on TLS at the edge and mutual TLS to the services. Its address
/// and what stops it.
pub async fn gateway_beside(
    stack: &Stack,
    name: &str,
    tls: Option<std::sync::Arc<platform::tls::Tls>>,
) -> (SocketAddr, platform::shutdown::ShutdownTrigger) {
    let url = |s: &str| format!("http://{}", listen(&stack.settings, s));
    let config = gateway::Config {
        order_url: url("order"),
        user_url: url("user"),
        ad_url: url("ad"),
        search_url: url("search"),
        media_url: url("media"),
        report_url: url("report"),
        mutants: platform::Mutants::default(),
        metrics: platform::metrics::Registry::new(),
        edge_tls: tls.clone(),
        mesh_tls: tls,
        h3_listen: None,
    };
    let addr = free_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let events: std::sync::Arc<dyn platform::ports::EventLog> = std::sync::Arc::new(
        adapters::KafkaEventLog::connect(adapters::KafkaConfig::new(
            stack.settings.kafka_bootstrap.clone(),
        ))
        .await
        .expect("kafka"),
    );
    let group = format!("{}gateway-cache-{name}", stack.settings.schema_prefix);
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(gateway::run(listener, config, events, group, shutdown));
    (addr, trigger)
}

/// Waits until `addr` accepts connections; fails the test after `deadline`.
pub async fn accepting(addr: SocketAddr, deadline: Duration) {
    let started = tokio::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < deadline,
            "{addr} never started listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers `email` (with [`PASSWORD`]) through the gateway at `gateway`, and logs in.
pub async fn register_and_login(gateway: &str, email: &str) -> SessionView {
    let client = HttpClient::new(Duration::from_secs(10));
    let body = serde_json::json!({"email": email, "password": PASSWORD, "display_name": "Test"});
    let _: gateway::UserView = client
        .post_json(&format!("{gateway}/v1/users"), &[], &body)
        .await
        .expect("registered");
    let body = serde_json::json!({"email": email, "password": PASSWORD});
    client
        .post_json(&format!("{gateway}/v1/sessions"), &[], &body)
        .await
        .expect("logged in")
}

/// The `authorization` header of `session`.
pub fn bearer(session: &SessionView) -> String {
    format!("Bearer {}", session.access_token)
}

impl Stack {
    pub fn client(&self) -> HttpClient {
        HttpClient::new(Duration::from_secs(10))
    }

    /// Buys [`Stack::listing`] through the gateway (with `idempotency_key` if given).
    pub async fn place_order(&self, idempotency_key: Option<&str>) -> OrderView {
        let body = self.order_body();
        let auth = bearer(&self.session);
        let mut headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("idempotency-key", k))
            .into_iter()
            .collect();
        headers.push(("authorization", &auth));
        self.client()
            .post_json(&format!("{}/v1/orders", self.gateway), &headers, &body)
            .await
            .expect("order created")
    }

    /// Polls the order until `done` holds, within `deadline`.
    pub async fn await_order(
        &self,
        id: &str,
        deadline: Duration,
        done: impl Fn(&OrderView) -> bool,
    ) -> OrderView {
        let started = tokio::time::Instant::now();
        let mut last = None;
        let auth = bearer(&self.session);
        while started.elapsed() < deadline {
            match self
                .client()
                .get_json_with::<OrderView>(
                    &format!("{}/v1/orders/{id}", self.gateway),
                    &[("authorization", &auth)],
                )
                .await
            {
                Ok(o) if done(&o) => return o,
                Ok(o) => last = Some(o),
                Err(e) => tracing::debug!(error = %e, "poll"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "order {id} did not reach the expected state within {deadline:?}; last seen: {last:?}"
        );
    }
}

impl Stack {
    /// The body of an order of [`Stack::listing`].
    pub fn order_body(&self) -> serde_json::Value {
        serde_json::json!({"ad_id": self.listing.ad_id})
    }
}

/// Where `service` listens in `settings`.
pub fn listen(settings: &Settings, service: &str) -> SocketAddr {
    settings
        .listen(service)
        .unwrap_or_else(|| panic!("{service} listens somewhere"))
}
