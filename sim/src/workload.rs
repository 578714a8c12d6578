//! The client's workload, through the gateways as a user drives them: each customer
//! registers (twice at once, through two gateways, with the email's case changed — one
//! account must come of it), logs in, and places orders with its access token, each retried
//! with its idempotency key until acknowledged. After each acknowledged order, the next
//! customer asks for it: it must not be shown (the order is not theirs). Each customer also
//! posts an ad, reads it with `If-None-Match`, edits it, and reads it again with the old tag
//! (no 304 may come); some then hide or delete theirs.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use gateway::SessionView;
use platform::{
    http::{HttpClient, HttpError, HttpResponse},
    retry::{retry, RetryPolicy},
    Shutdown,
};

use crate::{scenario::Workload, topology};

/// Customers the orders are spread over.
pub const CUSTOMERS: u32 = 7;
const PASSWORD: &str = "simulated password";

/// What the client saw.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Order ids the gateway acknowledged.
    pub acknowledged: Vec<String>,
    /// The order service's request keys of creates refused with 429/503 (not retried).
    pub refused: Vec<String>,
    /// Orders shown to a user who does not own them: `(order id, reader's user id, owner)`.
    pub foreign_reads: Vec<(String, String, String)>,
    /// Ads the gateway acknowledged as created.
    pub ads: Vec<String>,
    /// Conditional reads answered 304 for a tag older than a version of the ad whose write
    /// had been acknowledged before the read was sent: `(ad id, tag, acknowledged version)`.
    pub stale_not_modified: Vec<(String, String, i64)>,
}

/// The email of customer `c`, as its `variant`-th registration spells it.
pub fn email(c: u32, variant: usize) -> String {
    match variant {
        0 => format!("customer-{c}@sim.test"),
        _ => format!("Customer-{c}@SIM.test"),
    }
}

fn gateway_url(i: usize) -> String {
    let gateways = topology::instances(topology::service("gateway"));
    gateways[i % gateways.len()].url()
}

fn patient() -> RetryPolicy {
    RetryPolicy {
        deadline: Duration::from_secs(120),
        attempts_max: 100,
        ..RetryPolicy::rpc()
    }
}

/// Each customer's session, made once and again after a 401.
struct Sessions {
    slots: Vec<tokio::sync::Mutex<(bool, Option<SessionView>)>>,
}

impl Sessions {
    fn new() -> Self {
        Sessions {
            slots: (0..CUSTOMERS)
                .map(|_| tokio::sync::Mutex::new((false, None)))
                .collect(),
        }
    }

    /// Customer `c`'s session: registered (the first time) and logged in.
    async fn get(&self, c: u32) -> Result<SessionView, HttpError> {
        let mut slot = self.slots[c as usize].lock().await;
        if let Some(s) = &slot.1 {
            return Ok(s.clone());
        }
        let client = HttpClient::new(Duration::from_secs(5));
        if !slot.0 {
            // Both spellings at once, through two gateways: a 409 is the other one winning.
            let attempts = (0..2).map(|variant| {
                let client = client.clone();
                async move {
                    let url = format!("{}/v1/users", gateway_url(variant));
                    let body = serde_json::json!({
                        "email": email(c, variant),
                        "password": PASSWORD,
                        "display_name": format!("Customer {c}"),
                    });
                    let r = retry(
                        &patient(),
                        "register",
                        &Shutdown::never(),
                        HttpError::is_transient,
                        |_| client.post_json::<_, serde_json::Value>(&url, &[], &body),
                    )
                    .await;
                    match r {
                        Ok(_) => Ok(()),
                        Err(e) => match e.into_inner() {
                            Some(HttpError::Status { status: 409, .. }) => Ok(()),
                            Some(e) => Err(e),
                            None => Err(HttpError::Protocol("register: gave up".into())),
                        },
                    }
                }
            });
            let results = futures::future::join_all(attempts).await;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(e);
            }
            slot.0 = true;
        }
        let url = format!("{}/v1/sessions", gateway_url(c as usize));
        let body = serde_json::json!({"email": email(c, 0), "password": PASSWORD});
        let session: SessionView = retry(
            &patient(),
            "login",
            &Shutdown::never(),
            HttpError::is_transient,
            |_| client.post_json(&url, &[], &body),
        )
        .await
        .map_err(|e| {
            e.into_inner()
                .unwrap_or_else(|| HttpError::Protocol("login: gave up".into()))
        })?;
        slot.1 = Some(session.clone());
        Ok(session)
    }

    /// Forgets customer `c`'s session (its token was refused).
    async fn forget(&self, c: u32) {
        self.slots[c as usize].lock().await.1 = None;
    }
}

#[derive(serde::Deserialize)]
struct Created {
    order_id: String,
}

/// Places `workload`'s orders, recording what the client saw in `observed`.
pub async fn run(workload: Workload, observed: Arc<Mutex<Observed>>) {
    let sessions = Arc::new(Sessions::new());
    let mut tasks = Vec::new();
    for c in 0..CUSTOMERS {
        let (observed, sessions) = (observed.clone(), sessions.clone());
        tasks.push(madsim::task::spawn(async move {
            ad_life(&sessions, c, &observed).await;
        }));
    }
    for i in 0..workload.orders {
        let (observed, sessions) = (observed.clone(), sessions.clone());
        let retries = workload.retry;
        tasks.push(madsim::task::spawn(async move {
            let client = HttpClient::new(Duration::from_secs(5));
            let c = i % CUSTOMERS;
            // The client spreads its orders over the gateway instances (a load balancer's
            // round robin); each order's retries stay with its gateway.
            let url = format!("{}/v1/orders", gateway_url(i as usize));
            let key = format!("workload-{i}");
            let body = serde_json::json!({
                "item": format!("item-{i}"),
                "amount_minor": 1_000 + i64::from(i) * 10,
                "currency": "RUB",
            });
            let attempt = || async {
                let session = sessions.get(c).await?;
                let auth = format!("Bearer {}", session.access_token);
                let headers = [
                    ("idempotency-key", key.as_str()),
                    ("authorization", auth.as_str()),
                ];
                let r = client.post_json::<_, Created>(&url, &headers, &body).await;
                if let Err(HttpError::Status { status: 401, .. }) = &r {
                    // An expired token: log in again and retry.
                    sessions.forget(c).await;
                    return Err(HttpError::Status {
                        status: 503,
                        body: "token refused".into(),
                    });
                }
                r.map(|created| (created, session.user_id))
            };
            let r = if retries {
                retry(
                    &patient(),
                    "place order",
                    &Shutdown::never(),
                    HttpError::is_transient,
                    |_| attempt(),
                )
                .await
                .map_err(|e| e.into_inner())
            } else {
                attempt().await.map_err(Some)
            };
            match r {
                Ok((created, _)) => {
                    if let Ok(mut o) = observed.lock() {
                        o.acknowledged.push(created.order_id.clone());
                    }
                    probe_foreign_read(&sessions, c, &created, &observed).await;
                }
                Err(Some(HttpError::Status {
                    status: 429 | 503, ..
                })) => {
                    if let Ok(session) = sessions.get(c).await {
                        if let Ok(mut o) = observed.lock() {
                            o.refused.push(gateway::request_key(&session.user_id, &key));
                        }
                    }
                }
                Err(_) => {}
            }
        }));
        madsim::time::sleep(Duration::from_millis(workload.gap_ms)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Sends `method url` as customer `c` until an answer that is not transient (or gives up).
async fn send_as(
    sessions: &Sessions,
    c: u32,
    method: &str,
    url: &str,
    extra: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Option<HttpResponse> {
    let client = HttpClient::new(Duration::from_secs(5));
    retry(
        &patient(),
        "ad call",
        &Shutdown::never(),
        HttpError::is_transient,
        |_| async {
            let session = sessions.get(c).await?;
            let auth = format!("Bearer {}", session.access_token);
            let mut headers = vec![("authorization", auth.as_str())];
            headers.extend_from_slice(extra);
            let r = client.send(method, url, &headers, body).await?;
            match r.status {
                401 => {
                    sessions.forget(c).await;
                    Err(HttpError::Status {
                        status: 503,
                        body: "token refused".into(),
                    })
                }
                s if s >= 500 || s == 429 => Err(HttpError::Status {
                    status: s,
                    body: String::from_utf8_lossy(&r.body).into_owned(),
                }),
                _ => Ok(r),
            }
        },
    )
    .await
    .ok()
}

/// Customer `c` posts an ad, reads it conditionally, edits its price, and checks that the old
/// tag no longer answers 304; then some hide or delete theirs.
async fn ad_life(sessions: &Sessions, c: u32, observed: &Mutex<Observed>) {
    let base = format!("{}/v1/ads", gateway_url(c as usize));
    let body = serde_json::json!({
        "title": format!("Bike of customer {c}"),
        "description": "simulated",
        "price": {"amount_minor": 10_000 + i64::from(c), "currency": "RUB"},
        "category": "bikes",
        "region": if c % 2 == 0 { "msk" } else { "nsk" },
    });
    let key = format!("ad-{c}");
    let Some(created) = send_as(
        sessions,
        c,
        "POST",
        &base,
        &[("idempotency-key", &key)],
        Some(&body),
    )
    .await
    else {
        return;
    };
    let Ok(ad) = created.json::<gateway::AdView>() else {
        return;
    };
    if let Ok(mut o) = observed.lock() {
        o.ads.push(ad.ad_id.clone());
    }
    let url = format!("{base}/{}", ad.ad_id);
    let first = gateway::etag(ad.version);
    // Unchanged: a 304 is right (a 200 too).
    let _ = send_as(sessions, c, "GET", &url, &[("if-none-match", &first)], None).await;
    let patch =
        serde_json::json!({"price": {"amount_minor": 20_000 + i64::from(c), "currency": "RUB"}});
    let Some(edited) = send_as(
        sessions,
        c,
        "PATCH",
        &url,
        &[("if-match", &first)],
        Some(&patch),
    )
    .await
    else {
        return;
    };
    // A 412 is a retry of an edit whose answer was lost: nothing acknowledged, nothing to check.
    let Ok(edited) = edited.json::<gateway::AdView>() else {
        return;
    };
    if let Some(r) = send_as(sessions, c, "GET", &url, &[("if-none-match", &first)], None).await {
        if r.status == 304 {
            if let Ok(mut o) = observed.lock() {
                o.stale_not_modified
                    .push((ad.ad_id.clone(), first.clone(), edited.version));
            }
        }
    }
    let tag = gateway::etag(edited.version);
    match c % 3 {
        1 => {
            let _ = send_as(sessions, c, "DELETE", &url, &[("if-match", &tag)], None).await;
        }
        2 => {
            let hide = serde_json::json!({"status": "HIDDEN"});
            let _ = send_as(
                sessions,
                c,
                "PATCH",
                &url,
                &[("if-match", &tag)],
                Some(&hide),
            )
            .await;
        }
        _ => {}
    }
}

/// The next customer asks for `created`; a 200 is a foreign read.
async fn probe_foreign_read(
    sessions: &Sessions,
    owner: u32,
    created: &Created,
    observed: &Mutex<Observed>,
) {
    let reader = (owner + 1) % CUSTOMERS;
    let Ok(session) = sessions.get(reader).await else {
        return;
    };
    let client = HttpClient::new(Duration::from_secs(5));
    let url = format!(
        "{}/v1/orders/{}",
        gateway_url(reader as usize),
        created.order_id
    );
    let auth = format!("Bearer {}", session.access_token);
    if let Ok(shown) = client
        .get_json_with::<serde_json::Value>(&url, &[("authorization", auth.as_str())])
        .await
    {
        let owner_id = shown["customer_id"].as_str().unwrap_or_default().to_owned();
        if owner_id != session.user_id {
            if let Ok(mut o) = observed.lock() {
                o.foreign_reads
                    .push((created.order_id.clone(), session.user_id.clone(), owner_id));
            }
        }
    }
}
