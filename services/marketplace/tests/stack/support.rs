use std::{net::SocketAddr, time::Duration};

use gateway::OrderView;
use marketplace::{Service, Settings};
use platform::{http::HttpClient, Shutdown};

/// A running stack; dropping it stops every service.
pub struct Stack {
    pub settings: Settings,
    pub gateway: String,
    _trigger: platform::shutdown::ShutdownTrigger,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// Starts every service with fresh schemas; `tune` adjusts the fakes.
pub async fn start(tune: impl FnOnce(&mut Settings)) -> Stack {
    let mut settings = Settings::from_env().expect("settings");
    settings.schema_prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    settings.gateway_listen = free_addr();
    settings.order_listen = free_addr();
    settings.payment_listen = free_addr();
    settings.delivery_listen = free_addr();
    settings.psp_listen = free_addr();
    settings.courier_listen = free_addr();
    settings.payment_callback_listen = free_addr();
    settings.psp.decline_per_mille = 0;
    settings.psp.timeout_per_mille = 0;
    settings.courier.fail_per_mille = 0;
    settings.courier.stage_ms = 200;
    tune(&mut settings);
    let (trigger, shutdown) = Shutdown::new();
    marketplace::start(&Service::ALL, &settings, shutdown)
        .await
        .expect("the stack starts (is `ci/infra/up.sh` running?)");
    // tonic binds its listeners inside its serve task: wait until every port accepts.
    for addr in [
        settings.order_listen,
        settings.payment_listen,
        settings.delivery_listen,
        settings.gateway_listen,
    ] {
        let started = tokio::time::Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{addr} never started listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let gateway = format!("http://{}", settings.gateway_listen);
    Stack {
        settings,
        gateway,
        _trigger: trigger,
    }
}

impl Stack {
    pub fn client(&self) -> HttpClient {
        HttpClient::new(Duration::from_secs(10))
    }

    /// Places an order through the gateway (with `idempotency_key` if given).
    pub async fn place_order(
        &self,
        idempotency_key: Option<&str>,
        body: serde_json::Value,
    ) -> OrderView {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("idempotency-key", k))
            .into_iter()
            .collect();
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
        while started.elapsed() < deadline {
            match self
                .client()
                .get_json::<OrderView>(&format!("{}/v1/orders/{id}", self.gateway))
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
