//! The `marketplace` process as an operator runs it: it stops cleanly on SIGTERM, and it ends
//! with a failure when a service it runs ends by itself (so a supervisor restarts it).

use std::{
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use crate::support::free_addr;

/// Bound on the process reacting.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn marketplace() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marketplace"));
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn");
    cmd
}

/// The child's exit status, awaited for at most [`EXIT_DEADLINE`] (then it is killed).
async fn exit_of(child: &mut Child, what: &str) -> ExitStatus {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            return status;
        }
        if started.elapsed() > EXIT_DEADLINE {
            let _ = child.kill();
            panic!("{what} within {EXIT_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_process_fails_when_a_service_it_runs_ends() {
    // The gateway's port is taken: the gateway ends at once, and the process with it.
    let taken = std::net::TcpListener::bind(free_addr()).expect("a port to take");
    let addr = taken.local_addr().expect("address");
    let mut child = marketplace()
        .args(["serve", "psp", "gateway"])
        .env("GATEWAY_LISTEN", addr.to_string())
        .env("PSP_LISTEN", free_addr().to_string())
        .spawn()
        .expect("start marketplace");
    let status = exit_of(&mut child, "the process must end when its gateway ends").await;
    assert!(!status.success(), "it must end with a failure: {status}");
    drop(taken);
}

#[tokio::test]
async fn the_process_stops_cleanly_on_sigterm() {
    let psp = free_addr();
    let mut child = marketplace()
        .args(["serve", "psp", "courier"])
        .env("PSP_LISTEN", psp.to_string())
        .env("COURIER_LISTEN", free_addr().to_string())
        .spawn()
        .expect("start marketplace");
    // Running once the PSP accepts connections.
    let started = tokio::time::Instant::now();
    while tokio::net::TcpStream::connect(psp).await.is_err() {
        if started.elapsed() > EXIT_DEADLINE {
            let _ = child.kill();
            panic!("the PSP never listened");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = exit_of(&mut child, "the process must stop on SIGTERM").await;
    assert!(status.success(), "a requested stop is a success: {status}");
}

/// A TCP proxy to PostgreSQL the test can cut (every connection dropped, nothing accepted)
/// and restore on the same address.
struct DbProxy {
    addr: std::net::SocketAddr,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl DbProxy {
    fn new() -> Self {
        let mut p = DbProxy {
            addr: free_addr(),
            tasks: None,
        };
        p.restore();
        p
    }

    fn restore(&mut self) {
        let listener = std::net::TcpListener::bind(self.addr).expect("the proxy's port");
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        self.tasks = Some(tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut db) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut db).await;
                    }
                });
            }
        }));
    }

    /// Drops the listener and every connection (the JoinSet aborts its links).
    fn cut(&mut self) {
        if let Some(t) = self.tasks.take() {
            t.abort();
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `/readyz` of the admin listener at `admin`: the status and body (bounded).
async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    let client = platform::http::HttpClient::new(Duration::from_secs(10));
    let r = client
        .send("GET", &format!("http://{admin}/readyz"), &[], None)
        .await
        .expect("the admin listener answers");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Waits (bounded) until `/readyz` answers `status`.
async fn readyz_becomes(admin: std::net::SocketAddr, status: u16) -> String {
    let started = tokio::time::Instant::now();
    loop {
        let (s, body) = readyz(admin).await;
        if s == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/readyz stayed {s} ({body}), not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_admin_listener_reports_liveness_and_readiness_on_its_database_and_kafka() {
    let mut db = DbProxy::new();
    let admin = free_addr();
    // A schema prefix unique across runs: OS randomness is what is wanted here.
    #[allow(clippy::disallowed_methods)]
    let prefix = format!("r{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut child = marketplace()
        .args(["serve", "search"])
        .env("ADMIN_LISTEN", admin.to_string())
        .env("SEARCH_LISTEN", free_addr().to_string())
        .env("SCHEMA_PREFIX", &prefix)
        .env(
            "DATABASE_URL",
            format!("postgres://marketplace:marketplace@{}/marketplace", db.addr),
        )
        .spawn()
        .expect("start marketplace");
    let guard = scopeguard(&mut child);
    let client = platform::http::HttpClient::new(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    loop {
        match client
            .send("GET", &format!("http://{admin}/healthz"), &[], None)
            .await
        {
            Ok(r) if r.status == 200 => break,
            _ if started.elapsed() < EXIT_DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("/healthz never answered 200: {other:?}"),
        }
    }
    let ready = readyz_becomes(admin, 200).await;
    assert!(
        ready.contains(r#""database":"ok""#) && ready.contains(r#""kafka":"ok""#),
        "{ready}"
    );
    // The database goes away: not ready, and the answer says which dependency.
    db.cut();
    let not_ready = readyz_becomes(admin, 503).await;
    assert!(
        not_ready.contains("the database does not answer") && !not_ready.contains("Kafka"),
        "{not_ready}"
    );
    // It comes back: ready again, without a restart.
    db.restore();
    readyz_becomes(admin, 200).await;
    // A route the admin listener does not have is a problem+json 404.
    let r = client
        .send("GET", &format!("http://{admin}/metricz"), &[], None)
        .await
        .expect("an answer");
    assert_eq!(r.status, 404);
    drop(guard);
}

/// Kills the child when dropped (also when the test fails).
fn scopeguard(child: &mut Child) -> impl Drop + '_ {
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}
