//! Metrics in the Prometheus text format, one [`Registry`] per service instance.
//!
//! There is no global recorder: every simulated node runs in one process, so each instance
//! is handed its own registry (through `Infra` or its config) and everything it measures
//! goes there. A process's admin listener renders the registries of the services it runs,
//! each sample labelled with its service.
//!
//! Series are made on first use and live as long as the registry: counters and gauges are
//! atomics, histograms have fixed buckets. Values read at scrape time (a breaker's state)
//! come from collectors.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::breaker::Breaker;

/// Latency buckets, in seconds: 1 ms to 30 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for long processes (a saga), in seconds: 100 ms to 10 min.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// A counter's value.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge's value.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram: counts per bucket (upper bounds), a sum and a count.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
pub struct HistogramCells {
    bounds: Vec<f64>,
    /// Observations at or below each bound (not cumulative; made so at render).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum in microunits (µs for seconds), to stay an integer atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram(Arc::new(HistogramCells {
            bounds: bounds.to_vec(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, v: f64) {
        let cells = &self.0;
        if let Some(i) = cells.bounds.iter().position(|b| v <= *b) {
            cells.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        cells.count.fetch_add(1, Ordering::Relaxed);
        let micros = (v.max(0.0) * 1e6).round() as u64;
        cells.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observes a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    /// By label pairs, sorted by label name.
    series: BTreeMap<Vec<(String, String)>, Series>,
}

/// Writes values read at scrape time: `(name, help, kind, labels, value)` per sample.
type Collector = Box<dyn Fn(&mut Vec<Sample>) + Send + Sync>;

/// A value read at scrape time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One instance's metrics.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
    collectors: Mutex<Vec<Collector>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn key(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    k.sort();
    k
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
    ) -> Series {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(key(labels))
            .or_insert_with(make)
            .clone()
    }

    /// The counter `name` with `labels` (made at 0 on first use).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, "counter", labels, || {
            Series::Counter(Counter::default())
        }) {
            Series::Counter(c) => c,
            // A name used as another kind: a bug; the value goes nowhere rather than panic.
            _ => Counter::default(),
        }
    }

    /// The gauge `name` with `labels`.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, "gauge", labels, || {
            Series::Gauge(Gauge::default())
        }) {
            Series::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram `name` with `labels` and bucket bounds `buckets` (seconds, for
    /// durations).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Histogram {
        match self.series(name, help, "histogram", labels, || {
            Series::Histogram(Histogram::new(buckets))
        }) {
            Series::Histogram(h) => h,
            _ => Histogram::new(buckets),
        }
    }

    /// Adds values read at every scrape.
    pub fn collect(&self, collector: impl Fn(&mut Vec<Sample>) + Send + Sync + 'static) {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(collector));
    }

    /// Exposes `breaker`'s state (0 closed, 1 open, 2 half-open), openings and refusals,
    /// labelled with its dependency.
    pub fn watch_breaker(&self, breaker: Arc<Breaker>) {
        self.collect(move |out| {
            let labels = vec![("dependency".to_owned(), breaker.name().to_owned())];
            out.push(Sample {
                name: "circuit_breaker_state",
                help: "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                kind: "gauge",
                labels: labels.clone(),
                value: f64::from(breaker.state().as_gauge()),
            });
            out.push(Sample {
                name: "circuit_breaker_opened_total",
                help: "Times the circuit breaker opened.",
                kind: "counter",
                labels: labels.clone(),
                value: breaker.opened_total() as f64,
            });
            out.push(Sample {
                name: "circuit_breaker_refused_total",
                help: "Calls the open circuit breaker refused without trying.",
                kind: "counter",
                labels,
                value: breaker.refused_total() as f64,
            });
        });
    }

    /// The text exposition (format 0.0.4) of every series, each sample also labelled
    /// with `extra` (e.g. the service).
    pub fn render(&self, extra: &[(&str, &str)]) -> String {
        render_page(&[(extra, self)])
    }

    /// Adds this registry's samples, labelled with `extra`, to `page` by family.
    fn add_to(&self, page: &mut Page, extra: &[(&str, &str)]) {
        let extra = key(extra);
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        for (name, family) in families.iter() {
            let (_, _, out) = page
                .entry(name.clone())
                .or_insert_with(|| (family.help.clone(), family.kind, String::new()));
            for (labels, series) in &family.series {
                let labels: Vec<(String, String)> =
                    extra.iter().chain(labels.iter()).cloned().collect();
                match series {
                    Series::Counter(c) => line(out, name, &labels, c.get() as f64),
                    Series::Gauge(g) => line(out, name, &labels, g.get() as f64),
                    Series::Histogram(h) => {
                        let cells = &h.0;
                        let mut cumulative = 0;
                        for (bound, n) in cells.bounds.iter().zip(&cells.buckets) {
                            cumulative += n.load(Ordering::Relaxed);
                            let mut l = labels.clone();
                            l.push(("le".into(), format_value(*bound)));
                            line(out, &format!("{name}_bucket"), &l, cumulative as f64);
                        }
                        let count = cells.count.load(Ordering::Relaxed);
                        let mut l = labels.clone();
                        l.push(("le".into(), "+Inf".into()));
                        line(out, &format!("{name}_bucket"), &l, count as f64);
                        let sum = cells.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        line(out, &format!("{name}_sum"), &labels, sum);
                        line(out, &format!("{name}_count"), &labels, count as f64);
                    }
                }
            }
        }
        drop(families);
        let mut samples = Vec::new();
        for c in self
            .collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            c(&mut samples);
        }
        for s in samples {
            let (_, _, out) = page
                .entry(s.name.to_owned())
                .or_insert_with(|| (s.help.to_owned(), s.kind, String::new()));
            let labels: Vec<(String, String)> =
                extra.iter().chain(s.labels.iter()).cloned().collect();
            line(out, s.name, &labels, s.value);
        }
    }
}

/// Families by name: help, kind and sample lines.
type Page = BTreeMap<String, (String, &'static str, String)>;

/// One page of several registries (each with its own extra labels, e.g. the service): each
/// family declared once, its samples from every registry together, as the format wants.
pub fn render_page(parts: &[(&[(&str, &str)], &Registry)]) -> String {
    let mut page = Page::new();
    for (extra, registry) in parts {
        registry.add_to(&mut page, extra);
    }
    let mut out = String::new();
    for (name, (help, kind, lines)) in page {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        out.push_str(&lines);
    }
    out
}

fn line(out: &mut String, name: &str, labels: &[(String, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The content type of [`Registry::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let r = Registry::new();
        let c = r.counter(
            "http_requests_total",
            "Requests.",
            &[("route", "/v1/orders"), ("code", "201")],
        );
        c.inc();
        r.counter(
            "http_requests_total",
            "Requests.",
            &[("code", "201"), ("route", "/v1/orders")],
        )
        .add(2);
        r.gauge("outbox_backlog", "Rows.", &[]).set(7);
        let h = r.histogram(
            "latency_seconds",
            "Latency.",
            &[("peer", "a\"b")],
            &[0.1, 1.0],
        );
        h.observe(0.05);
        h.observe(0.5);
        h.observe(3.0);
        let text = r.render(&[("service", "gateway")]);
        assert!(
            text.contains("# TYPE http_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "http_requests_total{service=\"gateway\",code=\"201\",route=\"/v1/orders\"} 3\n"
            ),
            "labels in one order make one series: {text}"
        );
        assert!(
            text.contains("outbox_backlog{service=\"gateway\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE latency_seconds histogram\n"),
            "{text}"
        );
        for (le, n) in [("0.1", 1), ("1", 2), ("+Inf", 3)] {
            let want = format!(
                "latency_seconds_bucket{{service=\"gateway\",peer=\"a\\\"b\",le=\"{le}\"}} {n}\n"
            );
            assert!(text.contains(&want), "{want} in {text}");
        }
        assert!(
            text.contains("latency_seconds_sum{service=\"gateway\",peer=\"a\\\"b\"} 3.55\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_count{service=\"gateway\",peer=\"a\\\"b\"} 3\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_watched_breaker_is_read_at_every_scrape() {
        let r = Registry::new();
        let b = Breaker::shared("psp");
        r.watch_breaker(b.clone());
        assert!(r
            .render(&[])
            .contains("circuit_breaker_state{dependency=\"psp\"} 0\n"));
        for _ in 0..crate::breaker::BreakerPolicy::default().failures_to_open {
            b.admit().expect("closed").failed();
        }
        let text = r.render(&[]);
        assert!(
            text.contains("circuit_breaker_state{dependency=\"psp\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("circuit_breaker_opened_total{dependency=\"psp\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn several_registries_on_one_page_declare_each_family_once_with_its_samples_together() {
        let (a, b) = (Registry::new(), Registry::new());
        a.counter("x_total", "X.", &[]).inc();
        a.gauge("y", "Y.", &[]).set(1);
        b.counter("x_total", "X.", &[]).inc();
        let page = render_page(&[
            (&[("service", "order")], &a),
            (&[("service", "payment")], &b),
        ]);
        assert_eq!(
            page,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{service=\"order\"} 1\n\
             x_total{service=\"payment\"} 1\n# HELP y Y.\n# TYPE y gauge\ny{service=\"order\"} 1\n"
        );
    }
}
