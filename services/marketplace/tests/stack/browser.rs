//! A real browser on the real stack: headless Chromium (`ci/infra/browser.sh` installs it)
//! opens the gateway's demo page, which logs in, places an order and follows its statuses
//! live with `EventSource` from the notification service. Two notification instances run
//! in processes of their own; while the order is under way the page's instance is
//! SIGKILLed (the page goes on at the other one), restarted, and then the other one is
//! killed (the page comes back): the page still reaches DELIVERED, with every status once
//! and in order.
//!
//! The browser is driven over the Chrome DevTools Protocol (a WebSocket of JSON commands):
//! `Target.createTarget` and `Target.attachToTarget` give a page session, and
//! `Runtime.evaluate` runs the test's steps in the page and reads its state back.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message},
    WebSocketStream,
};

use crate::support::{self, Stack};

type Socket = WebSocketStream<tokio::net::TcpStream>;

/// A headless Chromium with a throwaway profile; dropping it kills the browser.
struct Browser {
    child: Child,
    profile: PathBuf,
    socket: Socket,
    next_id: u64,
}

impl Browser {
    /// Starts the browser (`CHROMIUM`, else `chromium` on PATH) and connects to its
    /// DevTools endpoint, which it announces in `DevToolsActivePort` in its profile.
    async fn launch() -> Browser {
        static N: AtomicU32 = AtomicU32::new(0);
        let profile = std::env::temp_dir().join(format!(
            "marketplace-browser-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let child = Command::new(&program)
            .args([
                "--headless",
                // Tests run as root in CI containers, where the sandbox cannot start; the
                // browser only ever loads the stack's own page.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} does not start ({e}): run `ci/infra/browser.sh` to install it")
            });
        let announced = profile.join("DevToolsActivePort");
        let started = tokio::time::Instant::now();
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&announced) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_owned(), path.to_owned());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{program} never announced its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let url = format!("ws://127.0.0.1:{port}{path}");
        let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .expect("the DevTools port accepts");
        let request = url.into_client_request().expect("a DevTools URL");
        let (socket, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("the DevTools WebSocket opens");
        Browser {
            child,
            profile,
            socket,
            next_id: 0,
        }
    }

    /// Sends a command (to the page `session`, or to the browser) and waits for its answer,
    /// skipping the events in between.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            command["sessionId"] = json!(s);
        }
        self.socket
            .send(Message::Text(command.to_string().into()))
            .await
            .expect("a DevTools command is sent");
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let message = self
                    .socket
                    .next()
                    .await
                    .expect("the DevTools socket stays open")
                    .expect("a DevTools message");
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
                if value["id"] == json!(id) {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"));
        assert!(
            answer.get("error").is_none(),
            "{method} failed: {}",
            answer["error"]
        );
        answer["result"].clone()
    }

    /// Opens a tab at `url`; the page session to drive it with.
    async fn open(&mut self, url: &str) -> String {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let session = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        self.call(Some(&session), "Page.navigate", json!({"url": url}))
            .await;
        session
    }

    /// The value of `expression` in the page (promises awaited).
    async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Clicks (or submits, for a form) the element `id` of the page.
    async fn press(&mut self, session: &str, id: &str) {
        let action = format!(
            "(() => {{ const e = document.getElementById({id}); \
             if (e instanceof HTMLFormElement) e.requestSubmit(); else e.click(); return true; }})()",
            id = json!(id)
        );
        self.eval(session, &action).await;
    }

    /// Waits (bounded) until `expression` is true in the page; the page's `demo` state
    /// when it is not.
    async fn until(&mut self, session: &str, expression: &str, deadline: Duration) {
        let started = tokio::time::Instant::now();
        // Before the page has loaded, `demo` is undefined: that is "not yet".
        let guarded = format!(
            "(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
        );
        while self.eval(session, &guarded).await != json!(true) {
            if started.elapsed() > deadline {
                let state = self
                    .eval(
                        session,
                        "JSON.stringify({demo: window.demo, text: document.body && document.body.innerText})",
                    )
                    .await;
                panic!("`{expression}` not true within {deadline:?}; the page: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A child process, killed when dropped (also when the test fails).
struct Process(Child);

impl Process {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a notification instance listens: gRPC (the trigger API) and HTTP (the streams).
#[derive(Clone, Copy)]
struct Ports {
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
}

/// A `marketplace serve notification` process on the stack's schemas and group, listening
/// on `ports`.
fn notification_process(stack: &Stack, n: usize, ports: Ports) -> Process {
    let s = &stack.settings;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marketplace"));
    cmd.args(["serve", "notification"])
        .env("DATABASE_URL", &s.database_url)
        .env("KAFKA_BOOTSTRAP", &s.kafka_bootstrap)
        .env("REDIS_URL", &s.redis_url)
        .env("SCHEMA_PREFIX", &s.schema_prefix)
        .env("INSTANCE_ID", format!("notification-{n}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Every listener of the stack, so the process finds the user service (signing keys)
    // and the messaging provider; its own are `ports`.
    for key in s.listen.keys() {
        let addr = support::listen(s, key);
        cmd.env(
            format!("{}_LISTEN", key.to_uppercase().replace('-', "_")),
            addr.to_string(),
        );
    }
    cmd.env("NOTIFICATION_LISTEN", ports.grpc.to_string())
        .env("NOTIFICATION_HTTP_LISTEN", ports.http.to_string());
    Process(cmd.spawn().expect("start a notification process"))
}

async fn accepting(addr: std::net::SocketAddr) {
    support::accepting(addr, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_follows_an_order_to_delivered_across_notification_restarts() {
    let second = Ports {
        grpc: support::free_addr(),
        http: support::free_addr(),
    };
    let stack = support::start_without(&["notification"], |s| {
        // Slow couriers: the order is still under way when the first instance dies.
        s.courier.stage_ms = 4_000;
        // The saga tells the buyer through either instance.
        let first = support::listen(s, "notification");
        s.urls.insert(
            "notification".into(),
            format!("http://{first},http://{}", second.grpc),
        );
    })
    .await;
    let first = Ports {
        grpc: support::listen(&stack.settings, "notification"),
        http: support::listen(&stack.settings, "notification-http"),
    };
    let mut a = notification_process(&stack, 1, first);
    let mut b = notification_process(&stack, 2, second);
    accepting(first.http).await;
    accepting(second.http).await;

    let mut browser = Browser::launch().await;
    let page = browser
        .open(&format!(
            "{}/demo?notifications=http://{},http://{}&email=first@stack.test&ad={}",
            stack.gateway, first.http, second.http, stack.listing.ad_id
        ))
        .await;
    browser
        .until(
            &page,
            "document.readyState === 'complete' && window.demo",
            Duration::from_secs(30),
        )
        .await;
    browser
        .eval(
            &page,
            &format!(
                "document.getElementById('password').value = {}; true",
                json!(support::PASSWORD)
            ),
        )
        .await;
    browser.press(&page, "login").await;
    // Logged in, and the feed is open at some instance (one may answer 503 until it has
    // the signing keys; the page then tries the next).
    browser
        .until(
            &page,
            "demo.token && demo.opens.length >= 1 && demo.last",
            Duration::from_secs(30),
        )
        .await;
    browser.press(&page, "buy").await;
    browser
        .until(
            &page,
            "demo.order && demo.statuses.length >= 1",
            Duration::from_secs(60),
        )
        .await;
    let order_id = browser.eval(&page, "demo.order").await;
    let order_id = order_id.as_str().expect("the page's order id").to_owned();

    // The page stops following (Pause) while the order moves on; on Resume its new stream
    // starts after the last id it got, and nothing is missed.
    browser.press(&page, "pause").await;
    browser
        .until(
            &page,
            "document.getElementById('connection').textContent === 'paused'",
            Duration::from_secs(30),
        )
        .await;
    let seen = browser.eval(&page, "demo.seqs.at(-1)").await;
    let seen: i64 = seen
        .as_str()
        .and_then(|id| id.split(':').nth(1)?.parse().ok())
        .expect("the page's last seq");
    let started = tokio::time::Instant::now();
    let moved_to = loop {
        let feed: Value = stack
            .client()
            .get_json_with(
                &format!("http://{}/v1/notifications?after=0&limit=1", first.http),
                &[("authorization", &support::bearer(&stack.session))],
            )
            .await
            .expect("the feed's head");
        let last = feed["last_seq"].as_i64().unwrap_or(0);
        if last > seen {
            break last;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the feed did not move on past seq {seen} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    browser.press(&page, "pause").await;
    browser
        .until(
            &page,
            &format!("Number(demo.last.split(':')[1]) >= {moved_to}"),
            Duration::from_secs(30),
        )
        .await;
    let ids: Vec<String> =
        serde_json::from_value(browser.eval(&page, "demo.seqs").await).expect("ids");
    let seqs: Vec<i64> = ids
        .iter()
        .filter_map(|id| id.split(':').nth(1)?.parse().ok())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "after the pause the page has every update, once each (it paused at seq {seen}, \
         the feed reached {moved_to} meanwhile)"
    );

    // The instance the page follows dies mid-order (SIGKILL); the page goes on at the
    // other one.
    let opens = |v: Value| -> Vec<String> { serde_json::from_value(v).expect("the opens") };
    let at = opens(browser.eval(&page, "demo.opens").await);
    let on_first = at.last() == Some(&format!("http://{}", first.http));
    let (dying, dying_ports, other) = if on_first {
        (&mut a, first, second)
    } else {
        (&mut b, second, first)
    };
    dying.kill();
    let before: Vec<String> =
        serde_json::from_value(browser.eval(&page, "demo.statuses").await).expect("statuses");
    assert!(
        !before.iter().any(|s| s == "DELIVERED"),
        "the order was over before the kill: {before:?}"
    );
    browser
        .until(
            &page,
            &format!("demo.opens.at(-1) === 'http://{}'", other.http),
            Duration::from_secs(30),
        )
        .await;
    // It comes back, and the page's new instance dies in turn: the page comes back to it.
    *dying = notification_process(&stack, 3, dying_ports);
    accepting(dying_ports.http).await;
    if on_first {
        b.kill();
    } else {
        a.kill();
    }
    browser
        .until(
            &page,
            &format!("demo.opens.at(-1) === 'http://{}'", dying_ports.http),
            Duration::from_secs(30),
        )
        .await;
    browser
        .until(
            &page,
            "demo.statuses.at(-1) === 'DELIVERED'",
            Duration::from_secs(120),
        )
        .await;
    let shown: Vec<String> =
        serde_json::from_value(browser.eval(&page, "demo.statuses").await).expect("statuses");
    let ids: Vec<String> =
        serde_json::from_value(browser.eval(&page, "demo.seqs").await).expect("ids");
    let resets = browser.eval(&page, "demo.resets").await;
    let order = stack
        .await_order(&order_id, Duration::from_secs(30), |o| {
            o.status == "DELIVERED"
        })
        .await;
    assert_eq!(
        shown, order.history,
        "the page shows each status once, in order, across the restarts"
    );
    assert_eq!(
        resets,
        json!(0),
        "a resume the log can serve needs no reset"
    );
    // The buyer's feed holds only this order's statuses: seqs 1, 2, 3, … in one epoch.
    let epoch = ids[0].split(':').next().expect("epoch:seq").to_owned();
    let expected: Vec<String> = (1..=ids.len()).map(|i| format!("{epoch}:{i}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        browser
            .eval(&page, "document.getElementById('status').textContent")
            .await,
        json!("DELIVERED"),
        "the page shows it"
    );
}
