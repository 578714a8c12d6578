//! Killing and restarting real brokers through `ci/infra/kafka.sh`, with a guard that
//! restarts every broker it killed, also when the test panics.

use std::{
    net::{SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

/// The cluster's script (`kill-broker N` = SIGKILL, `start-broker N` = restart and wait until
/// the cluster reports it alive, `pause-broker N` / `resume-broker N` = SIGSTOP / SIGCONT).
const KAFKA_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ci/infra/kafka.sh");

/// Bound on a killed broker's port closing (the script returns once the process is a
/// zombie, which may be a moment before its listening socket is gone).
const PORT_CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// The listening port of broker `n` (fixed by `ci/infra/kafka.sh`).
fn broker_port(n: i32) -> u16 {
    match n {
        1 => 19092,
        2 => 19093,
        3 => 19094,
        _ => panic!("no broker {n}"),
    }
}

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Runs `kafka.sh args`, blocking; the error carries its output.
fn kafka_sh(args: &[&str]) -> Result<(), String> {
    let output = Command::new("bash")
        .arg(KAFKA_SH)
        .args(args)
        .output()
        .map_err(|e| format!("running {KAFKA_SH} {args:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{KAFKA_SH} {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// SIGKILLs broker `n` and waits until its port is closed; blocking.
fn kill_blocking(n: i32) -> Result<(), String> {
    kafka_sh(&["kill-broker", &n.to_string()])?;
    let deadline = Instant::now() + PORT_CLOSE_DEADLINE;
    while listening(broker_port(n)) {
        if Instant::now() >= deadline {
            return Err(format!(
                "broker {n} still listens {PORT_CLOSE_DEADLINE:?} after kill-broker"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts the brokers `ns` in parallel and waits until the cluster reports them alive;
/// blocking. Returns the ones that failed, with why.
fn start_blocking(ns: &[i32]) -> Vec<(i32, String)> {
    std::thread::scope(|scope| {
        let started: Vec<_> = ns
            .iter()
            .map(|&n| {
                (
                    n,
                    scope.spawn(move || kafka_sh(&["start-broker", &n.to_string()])),
                )
            })
            .collect();
        started
            .into_iter()
            .filter_map(|(n, handle)| match handle.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((n, e)),
                Err(_) => Some((n, "start thread panicked".to_owned())),
            })
            .collect()
    })
}

/// The brokers a test has killed; [`Outage::heal`] restarts them, and so does dropping the
/// guard (on a panic), so the cluster is always left with all three brokers running.
#[must_use]
pub struct Outage {
    down: Vec<i32>,
    /// Brokers SIGSTOPped and not resumed yet.
    paused: Vec<i32>,
}

impl Outage {
    pub fn new() -> Outage {
        Outage {
            down: Vec::new(),
            paused: Vec::new(),
        }
    }

    /// SIGKILLs broker `n` (a real crash: no controlled shutdown, no flush) and waits until
    /// its port is closed.
    pub async fn kill(&mut self, n: i32) -> Result<(), String> {
        // Remembered first: a half-done kill is restarted too (start-broker skips a live one).
        self.down.push(n);
        tokio::task::spawn_blocking(move || kill_blocking(n))
            .await
            .map_err(|e| format!("kill task: {e}"))?
    }

    /// SIGSTOPs broker `n`: it keeps its process and state and neither answers nor
    /// heartbeats until [`Outage::resume`] (or [`Outage::heal`]).
    pub async fn pause(&mut self, n: i32) -> Result<(), String> {
        self.paused.push(n);
        tokio::task::spawn_blocking(move || kafka_sh(&["pause-broker", &n.to_string()]))
            .await
            .map_err(|e| format!("pause task: {e}"))?
    }

    /// SIGCONTs a paused broker `n`.
    pub async fn resume(&mut self, n: i32) -> Result<(), String> {
        self.paused.retain(|p| *p != n);
        tokio::task::spawn_blocking(move || kafka_sh(&["resume-broker", &n.to_string()]))
            .await
            .map_err(|e| format!("resume task: {e}"))?
    }

    /// Resumes every paused broker, restarts every killed one (in parallel) and waits until
    /// the cluster reports them alive.
    pub async fn heal(&mut self) -> Result<(), String> {
        for n in std::mem::take(&mut self.paused) {
            self.resume(n).await?;
        }
        let down = self.down.clone();
        let failed = tokio::task::spawn_blocking(move || start_blocking(&down))
            .await
            .map_err(|e| format!("start task: {e}"))?;
        self.down.retain(|n| failed.iter().any(|(f, _)| f == n));
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("restarting brokers failed: {failed:?}"))
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.paused) {
            if let Err(e) = kafka_sh(&["resume-broker", &n.to_string()]) {
                eprintln!("[broker_faults] COULD NOT RESUME broker {n}: {e}; run `ci/infra/kafka.sh resume-broker {n}`");
            }
        }
        if self.down.is_empty() {
            return;
        }
        eprintln!(
            "[broker_faults] restarting brokers {:?} killed by a failed test",
            self.down
        );
        for (n, e) in start_blocking(&self.down) {
            eprintln!("[broker_faults] COULD NOT RESTART broker {n}: {e}; run `ci/infra/kafka.sh start-broker {n}`");
        }
    }
}
