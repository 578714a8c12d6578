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
