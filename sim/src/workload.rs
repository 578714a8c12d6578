//! The client's workload, through the gateways as a user drives them: each customer
//! registers (twice at once, through two gateways, with the email's case changed — one
//! account must come of it), logs in, and places orders with its access token, each retried
//! with its idempotency key until acknowledged. After each acknowledged order, the next
//! customer asks for it: it must not be shown (the order is not theirs).
//!
//! Ads: before ordering, each customer posts the ad it sells; each order buys the ad of the
//! customer three places on, naming the price the buyer last saw (a 409 sends it to look
//! again). Meanwhile each seller reads its ad with `If-None-Match`, raises the price, and
//! reads it again with the old tag (no 304 may come); each also posts a second ad and hides
//! or deletes it.

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
    /// Photos the gateway acknowledged as attached: `(ad id, photo id)`.
    pub photos: Vec<(String, String)>,
    /// Uploads through a URL the gateway handed out that storage refused: `(photo id,
    /// status)`.
    pub uploads_refused: Vec<(String, u16)>,
    /// Reports the gateway accepted (202).
    pub reports: Vec<String>,
    /// What the customers' live sessions received, in arrival order.
    pub received: Vec<Received>,
    /// Per customer: their user id and the last `epoch:seq` their sessions got.
    pub followers: std::collections::BTreeMap<u32, (String, String)>,
    /// Every live session the customers opened.
    pub sessions: Vec<SessionSpan>,
    /// Every `POST /v1/orders` the client sent, with how and when it was answered.
    pub order_attempts: Vec<Attempt>,
    /// The trace id (32 hex digits) each order request was sent in, by the order service's
    /// request key.
    pub order_traces: std::collections::BTreeMap<String, String>,
}

/// One request as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The gateway it went to.
    pub gateway: String,
    /// When it was sent and when its answer (or the client's give-up) came, ms since the
    /// epoch.
    pub sent_ms: u64,
    pub answered_ms: u64,
    /// The answer's status; 0 when none came (refused connection, the client's timeout).
    pub status: u16,
}

/// When a live session was open, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpan {
    pub user_id: String,
    pub customer: u32,
    pub session: u32,
    /// When its answer (SSE headers, WebSocket 101) arrived, ms since the epoch.
    pub opened_ms: u64,
    /// When it ended; `None` while it was still open when the run ended.
    pub closed_ms: Option<u64>,
}

/// One event a customer's live session received (keep-alives aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub customer: u32,
    pub user_id: String,
    /// The customer's n-th session (1, 2, …).
    pub session: u32,
    /// The notification instance it was connected to.
    pub instance: String,
    /// `position`, `reset`, or an update's kind.
    pub event: String,
    /// `epoch:seq` (empty for events without an id).
    pub id: String,
    pub data: String,
    /// When it arrived, ms since the epoch.
    pub at_ms: u64,
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

/// Places `workload`'s orders, recording what the client saw in `observed`. Each customer
/// also follows its live notifications until `stop` (see [`follow`]).
pub async fn run(workload: Workload, observed: Arc<Mutex<Observed>>, stop: Shutdown) {
    let sessions = Arc::new(Sessions::new());
    for c in 0..CUSTOMERS {
        let (sessions, observed, stop) = (sessions.clone(), observed.clone(), stop.clone());
        // Detached: it outlives the orders, until the world has settled.
        drop(madsim::task::spawn(async move {
            follow(&sessions, c, &observed, stop).await
        }));
    }
    // Every customer first registers and posts the ad it sells.
    let posting = (0..CUSTOMERS).map(|c| {
        let (sessions, observed) = (sessions.clone(), observed.clone());
        madsim::task::spawn(async move { post_listing(&sessions, c, &observed).await })
    });
    let listings: Vec<Option<gateway::AdView>> = futures::future::join_all(posting)
        .await
        .into_iter()
        .map(|r| r.ok().flatten())
        .collect();
    // What each buyer believes each ad costs: the price it saw, until a 409 says otherwise.
    let known: Arc<Mutex<Vec<Option<gateway::Price>>>> = Arc::new(Mutex::new(
        listings
            .iter()
            .map(|l| l.as_ref().map(|a| a.price.clone()))
            .collect(),
    ));
    let mut tasks = Vec::new();
    for (c, listing) in (0..CUSTOMERS).zip(listings.iter().cloned()) {
        let (observed, sessions) = (observed.clone(), sessions.clone());
        let others = listings.clone();
        tasks.push(madsim::task::spawn(async move {
            if let Some(listing) = listing {
                reprice(&sessions, c, &listing, &observed).await;
                photograph(&sessions, c, &listing, &observed).await;
            }
            report_others(&sessions, c, &others, &observed).await;
            scratch_ad(&sessions, c, &observed).await;
        }));
    }
    for i in 0..workload.orders {
        let (observed, sessions, known) = (observed.clone(), sessions.clone(), known.clone());
        let retries = workload.retry;
        let c = i % CUSTOMERS;
        // Each customer buys from the customer three places on.
        let seller = ((c + 3) % CUSTOMERS) as usize;
        let Some(listing) = listings[seller].clone() else {
            continue;
        };
        tasks.push(madsim::task::spawn(async move {
            let client = HttpClient::new(Duration::from_secs(5));
            // The client spreads its orders over the gateway instances (a load balancer's
            // round robin); each order's retries stay with its gateway.
            let base = gateway_url(i as usize);
            let url = format!("{base}/v1/orders");
            let key = format!("workload-{i}");
            // Each order is placed in a trace of its own, which everything it causes must
            // carry (the `trace-context` checker).
            let trace = platform::trace::TraceContext::start();
            let traceparent = trace.traceparent();
            let attempt = || async {
                let session = sessions.get(c).await?;
                if let Ok(mut o) = observed.lock() {
                    let request = gateway::request_key(&session.user_id, &key);
                    o.order_traces.insert(request, trace.trace_id_hex());
                }
                let auth = format!("Bearer {}", session.access_token);
                let headers = [
                    ("idempotency-key", key.as_str()),
                    ("authorization", auth.as_str()),
                    ("traceparent", traceparent.as_str()),
                ];
                let expected = known.lock().ok().and_then(|k| k[seller].clone());
                let body = serde_json::json!({"ad_id": listing.ad_id, "expected_price": expected});
                let sent_ms = platform::store::now_ms();
                let r = client.post_json::<_, Created>(&url, &headers, &body).await;
                let status = match &r {
                    Ok(_) => 201,
                    Err(HttpError::Status { status, .. }) => *status,
                    Err(_) => 0,
                };
                if let Ok(mut o) = observed.lock() {
                    o.order_attempts.push(Attempt {
                        gateway: base.clone(),
                        sent_ms,
                        answered_ms: platform::store::now_ms(),
                        status,
                    });
                }
                match &r {
                    Err(HttpError::Status { status: 401, .. }) => {
                        // An expired token: log in again and retry.
                        sessions.forget(c).await;
                        Err(HttpError::Status {
                            status: 503,
                            body: "token refused".into(),
                        })
                    }
                    Err(HttpError::Status { status: 409, .. }) => {
                        // The price moved: look at the ad again, then order at its price.
                        let ad_url = format!("{base}/v1/ads/{}", listing.ad_id);
                        if let Ok(ad) = client.get_json::<gateway::AdView>(&ad_url).await {
                            if let Ok(mut k) = known.lock() {
                                k[seller] = Some(ad.price);
                            }
                        }
                        Err(HttpError::Status {
                            status: 503,
                            body: "price changed".into(),
                        })
                    }
                    _ => r.map(|created| (created, session.user_id)),
                }
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

/// Updates a session takes before the client drops it and resumes elsewhere (at most).
const SESSION_UPDATES_MAX: u32 = 6;

/// Customer `c` follows its live notifications over SSE until `stop`, as an app does: it
/// resumes from the last event id it got (from the start, `0:0`, the first time), and
/// whenever its session ends — the instance died, it said `close`, or the client dropped it
/// after a few updates on purpose — it connects to the next notification instance.
async fn follow(sessions: &Sessions, c: u32, observed: &Mutex<Observed>, stop: Shutdown) {
    let instances = topology::instances(topology::service("notification"));
    let mut last = "0:0".to_owned();
    let mut session_no = 0u32;
    let mut attempt = c as usize;
    let backoff = || madsim::time::sleep(Duration::from_millis(300));
    while !stop.is_requested() {
        attempt += 1;
        let instance = &instances[attempt % instances.len()];
        let session = tokio::select! {
            biased;
            _ = stop.wait() => return,
            s = sessions.get(c) => s,
        };
        let Ok(session) = session else {
            backoff().await;
            continue;
        };
        // Odd customers use WebSocket, even ones SSE: the same sessions either way.
        let websocket = c % 2 == 1;
        let base = instance.http_url();
        let opened = tokio::select! {
            biased;
            _ = stop.wait() => return,
            o = Live::open(&base, websocket, &session.access_token, &last) => o,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(notification::client::SseError::Refused { status: 401, .. }) => {
                sessions.forget(c).await;
                continue;
            }
            Err(_) => {
                backoff().await;
                continue;
            }
        };
        session_no += 1;
        let span = observed.lock().map_or(usize::MAX, |mut o| {
            o.sessions.push(SessionSpan {
                user_id: session.user_id.clone(),
                customer: c,
                session: session_no,
                opened_ms: platform::store::now_ms(),
                closed_ms: None,
            });
            o.sessions.len() - 1
        });
        let close = |observed: &Mutex<Observed>| {
            if let Ok(mut o) = observed.lock() {
                if let Some(s) = o.sessions.get_mut(span) {
                    s.closed_ms = Some(platform::store::now_ms());
                }
            }
        };
        let budget = 1 + madsim::rand::random::<u32>() % SESSION_UPDATES_MAX;
        let mut updates = 0;
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.wait() => return,
                e = stream.next() => e,
            };
            let Some(Ok(event)) = event else { break };
            if event.event == "close" {
                break;
            }
            if !event.id.is_empty() {
                last = event.id.clone();
            }
            if let Ok(mut o) = observed.lock() {
                o.followers
                    .insert(c, (session.user_id.clone(), last.clone()));
                o.received.push(Received {
                    customer: c,
                    user_id: session.user_id.clone(),
                    session: session_no,
                    instance: instance.name.clone(),
                    event: event.event.clone(),
                    id: event.id,
                    data: event.data,
                    at_ms: platform::store::now_ms(),
                });
            }
            if notification::KINDS.contains(&event.event.as_str()) {
                updates += 1;
                if updates >= budget {
                    break;
                }
            }
        }
        close(observed);
    }
}

/// A live session, over SSE or WebSocket.
enum Live {
    Sse(notification::client::SseStream),
    Ws(notification::client::WsStream),
}

impl Live {
    async fn open(
        base: &str,
        websocket: bool,
        token: &str,
        last: &str,
    ) -> Result<Self, notification::client::SseError> {
        let timeout = Duration::from_secs(5);
        if websocket {
            let url = format!(
                "{}/v1/notifications/ws?since={last}",
                base.replacen("http://", "ws://", 1)
            );
            notification::client::WsStream::open(&url, token, timeout)
                .await
                .map(Live::Ws)
        } else {
            let url = format!("{base}/v1/notifications/stream");
            notification::client::SseStream::open(&url, token, Some(last), timeout)
                .await
                .map(Live::Sse)
        }
    }

    async fn next(
        &mut self,
    ) -> Option<Result<notification::client::Event, notification::client::SseError>> {
        match self {
            Live::Sse(s) => s.next().await,
            // An update message carries the update as SSE's data does, under `update`.
            Live::Ws(s) => s.next().await.map(|e| {
                e.map(|mut e| {
                    if let Some(update) = e.json().filter(|_| e.event == "update") {
                        e.event = update["update"]["kind"].as_str().unwrap_or("?").to_owned();
                        e.data = update["update"].to_string();
                    }
                    e
                })
            }),
        }
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

/// Customer `c` posts the ad it sells.
async fn post_listing(
    sessions: &Sessions,
    c: u32,
    observed: &Mutex<Observed>,
) -> Option<gateway::AdView> {
    post_ad(sessions, c, &format!("listing-{c}"), observed).await
}

async fn post_ad(
    sessions: &Sessions,
    c: u32,
    key: &str,
    observed: &Mutex<Observed>,
) -> Option<gateway::AdView> {
    let base = format!("{}/v1/ads", gateway_url(c as usize));
    let body = serde_json::json!({
        "title": format!("Bike of customer {c}"),
        "description": "simulated",
        "price": {"amount_minor": 10_000 + i64::from(c), "currency": "RUB"},
        "category": "bikes",
        "region": if c % 2 == 0 { "msk" } else { "nsk" },
    });
    let created = send_as(
        sessions,
        c,
        "POST",
        &base,
        &[("idempotency-key", key)],
        Some(&body),
    )
    .await?;
    let ad = created.json::<gateway::AdView>().ok()?;
    if let Ok(mut o) = observed.lock() {
        o.ads.push(ad.ad_id.clone());
    }
    Some(ad)
}

/// Customer `c` reads its ad conditionally, raises its price, and checks that the old tag no
/// longer answers 304.
async fn reprice(sessions: &Sessions, c: u32, ad: &gateway::AdView, observed: &Mutex<Observed>) {
    let url = format!("{}/v1/ads/{}", gateway_url(c as usize), ad.ad_id);
    let first = gateway::etag(ad.version);
    // The card is read as anyone reads it (no token: through the gateway's cache).
    let public = HttpClient::new(Duration::from_secs(5));
    let read = |tag: String| {
        let (public, url) = (public.clone(), url.clone());
        async move {
            retry(
                &patient(),
                "read card",
                &Shutdown::never(),
                HttpError::is_transient,
                |_| async {
                    let r = public
                        .send("GET", &url, &[("if-none-match", tag.as_str())], None)
                        .await?;
                    if r.status >= 500 {
                        return Err(HttpError::Status {
                            status: r.status,
                            body: String::new(),
                        });
                    }
                    Ok(r)
                },
            )
            .await
            .ok()
        }
    };
    // Unchanged: a 304 is right (a 200 too).
    let _ = read(first.clone()).await;
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
    if let Some(r) = read(first.clone()).await {
        if r.status == 304 {
            if let Ok(mut o) = observed.lock() {
                o.stale_not_modified
                    .push((ad.ad_id.clone(), first.clone(), edited.version));
            }
        }
    }
}

/// Customer `c` adds a photo to its listing: asks for an upload slot, uploads the bytes
/// straight to object storage, and completes the upload. Every fourth customer "crashes"
/// before uploading and completes anyway: the photo must not be attached.
async fn photograph(sessions: &Sessions, c: u32, ad: &gateway::AdView, observed: &Mutex<Observed>) {
    let base = gateway_url(c as usize);
    let size = 64 + i64::from(c);
    let body = serde_json::json!({"content_type": "image/png", "size_bytes": size});
    let url = format!("{base}/v1/ads/{}/photos", ad.ad_id);
    let Some(slot) = send_as(sessions, c, "POST", &url, &[], Some(&body)).await else {
        return;
    };
    let Ok(slot) = slot.json::<gateway::UploadView>() else {
        return;
    };
    if c % 4 != 3 {
        let storage = HttpClient::new(Duration::from_secs(5));
        let headers: Vec<(&str, &str)> = slot
            .upload_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let bytes = vec![u8::try_from(c % 251).unwrap_or(0); size as usize];
        let uploaded = retry(
            &patient(),
            "upload photo",
            &Shutdown::never(),
            HttpError::is_transient,
            |_| async {
                let r = storage
                    .send_bytes(
                        &slot.upload_method,
                        &slot.upload_url,
                        &headers,
                        Some((bytes.clone(), "image/png")),
                    )
                    .await?;
                match r.status {
                    200..=299 => Ok(()),
                    status => Err(HttpError::Status {
                        status,
                        body: String::from_utf8_lossy(&r.body).into_owned(),
                    }),
                }
            },
        )
        .await;
        if let Err(e) = uploaded {
            if let Some(HttpError::Status { status, .. }) = e.into_inner() {
                if status < 500 && status != 429 {
                    if let Ok(mut o) = observed.lock() {
                        o.uploads_refused.push((slot.photo_id.clone(), status));
                    }
                }
            }
            return;
        }
    }
    let url = format!("{base}{}", slot.complete_url);
    let Some(done) = send_as(sessions, c, "POST", &url, &[], None).await else {
        return;
    };
    if done.status == 200 {
        if let Ok(mut o) = observed.lock() {
            o.photos.push((ad.ad_id.clone(), slot.photo_id.clone()));
        }
    }
}

/// Customer `c` reports, a few seconds apart, the listing of the next customer (a scam for
/// every third customer, so moderation bans some), the customer two on (offensive), and the
/// listing four on (with a comment asking for a ban from every other customer).
async fn report_others(
    sessions: &Sessions,
    c: u32,
    listings: &[Option<gateway::AdView>],
    observed: &Mutex<Observed>,
) {
    let base = format!("{}/v1/reports", gateway_url(c as usize));
    let listing = |k: u32| listings[((c + k) % CUSTOMERS) as usize].clone();
    let mut bodies = Vec::new();
    if let Some(ad) = listing(1) {
        let reason = if c % 3 == 0 { "scam" } else { "spam" };
        bodies.push(
            serde_json::json!({"target_kind": "AD", "target_id": ad.ad_id, "reason": reason}),
        );
    }
    if let Ok(other) = sessions.get((c + 2) % CUSTOMERS).await {
        bodies.push(serde_json::json!({"target_kind": "USER", "target_id": other.user_id, "reason": "offensive"}));
    }
    if let Some(ad) = listing(4) {
        let comment = if c % 2 == 0 {
            "please ban this"
        } else {
            "looks odd"
        };
        bodies.push(serde_json::json!({"target_kind": "AD", "target_id": ad.ad_id, "reason": "other", "comment": comment}));
    }
    for body in bodies {
        if let Some(r) = send_as(sessions, c, "POST", &base, &[], Some(&body)).await {
            if r.status == 202 {
                if let Ok(view) = r.json::<gateway::ReportView>() {
                    if let Ok(mut o) = observed.lock() {
                        o.reports.push(view.report_id);
                    }
                }
            }
        }
        madsim::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Customer `c` posts a second ad, and hides or deletes it (or keeps it), by `c`.
async fn scratch_ad(sessions: &Sessions, c: u32, observed: &Mutex<Observed>) {
    let Some(ad) = post_ad(sessions, c, "lamp", observed).await else {
        return;
    };
    let url = format!("{}/v1/ads/{}", gateway_url(c as usize), ad.ad_id);
    let tag = gateway::etag(ad.version);
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

/// One ad looked up through search after heal: its id, its status, and whether a search for
/// its title in its category and region found it (`None`: the search failed).
pub type Lookup = (String, String, Option<bool>);

/// Searches every ad of `ads` by its title, category and region, through the gateways.
pub async fn final_searches(ads: &[ad::Ad]) -> Vec<Lookup> {
    let client = HttpClient::new(Duration::from_secs(5));
    let mut out = Vec::new();
    for (i, a) in ads.iter().enumerate() {
        let q: String = crate::workload::words(&a.title).join("+");
        let url = format!(
            "{}/v1/search?q={q}&category={}&region={}&limit=100",
            gateway_url(i),
            a.category,
            a.region
        );
        let found = retry(
            &patient(),
            "search",
            &Shutdown::never(),
            HttpError::is_transient,
            |_| client.get_json::<gateway::SearchResults>(&url),
        )
        .await
        .ok()
        .map(|r| r.items.iter().any(|h| h.ad_id == a.ad_id));
        out.push((a.ad_id.clone(), a.status.clone(), found));
    }
    out
}

/// The words of a title, as a URL query can carry them.
fn words(title: &str) -> Vec<String> {
    search::store::words(title)
        .into_iter()
        .filter(|w| w.chars().all(|c| c.is_ascii_alphanumeric()))
        .collect()
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
