//! Where finished spans go: nowhere (the default), the log, or an OpenTelemetry collector
//! over OTLP/HTTP with the JSON encoding (`POST {endpoint}/v1/traces`), in batches.
//!
//! One exporter per process, chosen at start ([`install`]); the simulation installs none, so
//! spans cost a clock read there. The OTLP batcher keeps at most [`QUEUE_MAX`] spans: a
//! collector that is down or slow loses spans (counted in [`dropped`]), never requests.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};
use tokio::sync::Notify;

use super::TraceContext;

/// Spans waiting for the collector at most; later ones are dropped until it drains.
pub const QUEUE_MAX: usize = 4096;
/// Spans per OTLP request at most.
pub const BATCH_MAX: usize = 512;
/// How long a span waits for its batch to fill before it is sent anyway.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// One `INFO` line per span (target `span`).
    Log,
    /// OTLP/HTTP JSON to `endpoint` (`http://host:port`, `/v1/traces` is added).
    Otlp { endpoint: String },
}

impl Exporter {
    /// `OTEL_TRACES_EXPORTER`-style choice: `none`/empty → no exporter, `console` or `log`
    /// → [`Exporter::Log`], `otlp` → [`Exporter::Otlp`] at `endpoint`.
    pub fn parse(kind: &str, endpoint: &str) -> Result<Option<Exporter>, String> {
        match kind {
            "" | "none" => Ok(None),
            "console" | "log" => Ok(Some(Exporter::Log)),
            "otlp" => {
                if !endpoint.starts_with("http://") {
                    return Err(format!(
                        "OTLP endpoint {endpoint:?}: an http:// URL is required"
                    ));
                }
                Ok(Some(Exporter::Otlp {
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                }))
            }
            other => Err(format!(
                "traces exporter {other:?}: expected none, console or otlp"
            )),
        }
    }
}

/// When a span started: wall time for the export, the runtime's clock for its length.
#[derive(Clone, Copy, Debug)]
pub struct Started {
    unix_nanos: u128,
    at: tokio::time::Instant,
}

impl Started {
    pub fn now() -> Self {
        Started {
            unix_nanos: unix_nanos(),
            at: tokio::time::Instant::now(),
        }
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub name: String,
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_id: Option<u64>,
    pub start_unix_nanos: u128,
    pub end_unix_nanos: u128,
    pub ok: bool,
}

impl SpanRecord {
    /// The span as an OTLP JSON `Span` (ids in hex, times as decimal strings).
    pub fn to_otlp(&self) -> Value {
        let mut span = json!({
            "traceId": format!("{:032x}", self.trace_id),
            "spanId": format!("{:016x}", self.span_id),
            "name": self.name,
            "kind": 1,
            "startTimeUnixNano": self.start_unix_nanos.to_string(),
            "endTimeUnixNano": self.end_unix_nanos.to_string(),
            "status": {"code": if self.ok { 1 } else { 2 }},
        });
        if let Some(p) = self.parent_id {
            span["parentSpanId"] = json!(format!("{p:016x}"));
        }
        span
    }
}

/// The body of one OTLP/HTTP export request for `spans` of service `service`.
pub fn otlp_body(service: &str, spans: &[SpanRecord]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "marketplace"},
                "spans": spans.iter().map(SpanRecord::to_otlp).collect::<Vec<_>>(),
            }]
        }]
    })
}

struct Installed {
    exporter: Exporter,
    queue: Mutex<Vec<SpanRecord>>,
    wake: Notify,
}

static INSTALLED: OnceLock<Arc<Installed>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Spans dropped because the queue was full or the collector refused them.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Spans the collector accepted.
pub fn exported() -> u64 {
    EXPORTED.load(Ordering::Relaxed)
}

/// Sets this process's exporter (the first call wins) and, for OTLP, starts the batcher
/// that sends spans as `service` until `shutdown` (then what is queued is sent once more).
pub fn install(exporter: Exporter, service: &str, shutdown: crate::Shutdown) {
    let installed = Arc::new(Installed {
        exporter: exporter.clone(),
        queue: Mutex::new(Vec::new()),
        wake: Notify::new(),
    });
    if INSTALLED.set(installed.clone()).is_err() {
        return;
    }
    if let Exporter::Otlp { endpoint } = exporter {
        tokio::spawn(send_batches(
            installed,
            format!("{endpoint}/v1/traces"),
            service.to_owned(),
            shutdown,
        ));
    }
}

/// Ends the span `ctx` named `name` that began at `started`.
pub fn finish(name: &str, ctx: &TraceContext, started: Started, ok: bool) {
    let Some(installed) = INSTALLED.get() else {
        return;
    };
    let elapsed = started.at.elapsed().as_nanos();
    let record = SpanRecord {
        name: name.to_owned(),
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent_id: ctx.parent_id,
        start_unix_nanos: started.unix_nanos,
        end_unix_nanos: started.unix_nanos + elapsed,
        ok,
    };
    match installed.exporter {
        Exporter::Log => tracing::info!(
            target: "span",
            trace_id = %format!("{:032x}", record.trace_id),
            span_id = %format!("{:016x}", record.span_id),
            parent_id = %record.parent_id.map(|p| format!("{p:016x}")).unwrap_or_default(),
            duration_us = (elapsed / 1000) as u64,
            ok,
            "{name}"
        ),
        Exporter::Otlp { .. } => {
            let Ok(mut q) = installed.queue.lock() else {
                return;
            };
            if q.len() >= QUEUE_MAX {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.push(record);
            if q.len() >= BATCH_MAX {
                installed.wake.notify_one();
            }
        }
    }
}

async fn send_batches(
    installed: Arc<Installed>,
    url: String,
    service: String,
    shutdown: crate::Shutdown,
) {
    let client = crate::http::HttpClient::new(Duration::from_secs(5));
    loop {
        let stopping = tokio::select! {
            biased;
            _ = shutdown.wait() => true,
            _ = installed.wake.notified() => false,
            _ = tokio::time::sleep(BATCH_DELAY) => false,
        };
        loop {
            let batch: Vec<SpanRecord> = match installed.queue.lock() {
                Ok(mut q) => {
                    let n = q.len().min(BATCH_MAX);
                    q.drain(..n).collect()
                }
                Err(_) => return,
            };
            if batch.is_empty() {
                break;
            }
            let body = otlp_body(&service, &batch);
            match client.send("POST", &url, &[], Some(&body)).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    EXPORTED.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                outcome => {
                    DROPPED.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let why = match outcome {
                        Ok(r) => format!("status {}", r.status),
                        Err(e) => e.to_string(),
                    };
                    tracing::debug!(why, "trace export refused");
                    break;
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_choice_is_checked() {
        assert_eq!(Exporter::parse("", "x"), Ok(None));
        assert_eq!(Exporter::parse("none", "x"), Ok(None));
        assert_eq!(Exporter::parse("console", "x"), Ok(Some(Exporter::Log)));
        assert_eq!(
            Exporter::parse("otlp", "http://127.0.0.1:4318/"),
            Ok(Some(Exporter::Otlp {
                endpoint: "http://127.0.0.1:4318".into()
            }))
        );
        assert!(Exporter::parse("otlp", "grpc://x").is_err());
        assert!(Exporter::parse("jaeger", "").is_err());
    }

    #[test]
    fn a_span_is_written_as_otlp_json() {
        let span = SpanRecord {
            name: "order.create".into(),
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0xf067aa0ba902b7,
            parent_id: Some(1),
            start_unix_nanos: 10,
            end_unix_nanos: 25,
            ok: false,
        };
        let body = otlp_body("order", &[span]);
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["spanId"], "00f067aa0ba902b7");
        assert_eq!(s["parentSpanId"], "0000000000000001");
        assert_eq!(s["endTimeUnixNano"], "25");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "order"
        );
    }
}
