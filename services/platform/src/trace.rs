//! W3C trace context (<https://www.w3.org/TR/trace-context/>) carried through every hop an
//! order takes: the gateway accepts a client's `traceparent`/`tracestate` (or starts a trace),
//! gRPC calls carry them in metadata ([`inject`], a client interceptor, since madsim-tonic
//! ignores tower layers), HTTP calls to providers in headers ([`crate::http::HttpClient`]
//! adds them), and events in Kafka headers through the outbox to every consumer
//! ([`crate::inbox`] runs a record's handling inside its context).
//!
//! Work that outlives a request (a saga step, a payment worker's PSP call) runs in the context
//! the request left in the store ([`TraceContext::stored`] / [`TraceContext::from_stored`]).
//!
//! The context of the running task is a task-local value ([`within`], [`current`]). Ids are
//! drawn from [`crate::ids`], so the simulation replays them from its seed.
//!
//! Spans (`name`, ids, parent, times, outcome) go to [`crate::trace::export`] when an
//! exporter is configured (off by default).

pub mod export;

use std::future::Future;

/// Header (and gRPC metadata key) of the trace's position.
pub const TRACEPARENT: &str = "traceparent";
/// Header of vendors' trace state.
pub const TRACESTATE: &str = "tracestate";
/// Header the gateway answers with: the `traceparent` of its span, so a client that sent no
/// context learns the trace id (W3C Trace Context Level 2 `traceresponse`).
pub const TRACERESPONSE: &str = "traceresponse";
/// `tracestate` longer than this is dropped (the spec lets a vendor drop what it cannot carry;
/// 512 bytes is the size every participant must propagate).
pub const TRACESTATE_BYTES_MAX: usize = 512;

/// Bound on the stored form ([`TraceContext::stored`]: 55 + 1 + [`TRACESTATE_BYTES_MAX`]),
/// which the tables that keep it declare too.
pub const STORED_CHARS_MAX: usize = 600;

/// Where a piece of work sits in a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never zero.
    pub trace_id: u128,
    /// This span's id: 8 bytes, never zero.
    pub span_id: u64,
    /// The span this one was started from, if any was known.
    pub parent_id: Option<u64>,
    /// `trace-flags` (bit 0: sampled).
    pub flags: u8,
    /// `tracestate`, passed on unchanged (empty when none or too long).
    pub state: String,
}

fn nonzero_u64() -> u64 {
    loop {
        let id = crate::ids::random_u128() as u64;
        if id != 0 {
            return id;
        }
    }
}

fn hex_field(s: &str, len: usize) -> Option<u128> {
    if s.len() != len
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

impl TraceContext {
    /// A new trace (sampled), with a root span.
    pub fn start() -> Self {
        let trace_id = loop {
            let id = crate::ids::random_u128();
            if id != 0 {
                break id;
            }
        };
        TraceContext {
            trace_id,
            span_id: nonzero_u64(),
            parent_id: None,
            flags: 1,
            state: String::new(),
        }
    }

    /// A span started from this one: same trace, flags and state, a new span id.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: nonzero_u64(),
            parent_id: Some(self.span_id),
            ..self.clone()
        }
    }

    /// The context a `traceparent` (and optional `tracestate`) names, as the span it came
    /// from: `span_id` is the caller's. `None` when the header is not valid trace context
    /// (then the receiver starts a new trace, as the spec asks).
    ///
    /// Version `00` must be exactly 55 characters; a later version may carry more fields
    /// after a `-`, which are ignored; version `ff`, upper-case hex, and all-zero ids are
    /// invalid.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let s = traceparent.trim_matches([' ', '\t']);
        let version = s.get(..2)?;
        let v = hex_field(version, 2)?;
        if v == 0xff
            || (v == 0 && s.len() != 55)
            || (v != 0 && s.len() > 55 && s.as_bytes()[55] != b'-')
        {
            return None;
        }
        let mut parts = s.get(..55)?.split('-');
        let (_, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let trace_id = hex_field(trace, 32)?;
        let span_id = hex_field(parent, 16)? as u64;
        let flags = hex_field(flags, 2)? as u8;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        let state = tracestate
            .map(|t| t.trim_matches([' ', '\t']))
            .filter(|t| {
                t.len() <= TRACESTATE_BYTES_MAX && t.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .unwrap_or_default()
            .to_owned();
        Some(TraceContext {
            trace_id,
            span_id,
            parent_id: None,
            flags: if v == 0 { flags } else { flags & 1 },
            state,
        })
    }

    /// The context headers named (case-insensitively) in `headers`, as [`TraceContext::parse`].
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let (mut parent, mut state) = (None, None);
        for (k, v) in headers {
            if k.eq_ignore_ascii_case(TRACEPARENT) {
                parent = Some(v);
            } else if k.eq_ignore_ascii_case(TRACESTATE) {
                state = Some(v);
            }
        }
        Self::parse(parent?, state)
    }

    /// `version-traceid-spanid-flags`, with this span as the parent of whoever receives it.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The headers that carry this context to a callee.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = vec![(TRACEPARENT.to_owned(), self.traceparent())];
        if !self.state.is_empty() {
            out.push((TRACESTATE.to_owned(), self.state.clone()));
        }
        out
    }

    /// The form kept in a store next to the work it started: `traceparent`, then a line
    /// feed and `tracestate` when there is one.
    pub fn stored(&self) -> String {
        if self.state.is_empty() {
            self.traceparent()
        } else {
            format!("{}\n{}", self.traceparent(), self.state)
        }
    }

    /// The context [`TraceContext::stored`] wrote; `None` for an empty or invalid text (work
    /// stored before traces were kept).
    pub fn from_stored(s: &str) -> Option<Self> {
        let (parent, state) = match s.split_once('\n') {
            Some((p, st)) => (p, Some(st)),
            None => (s, None),
        };
        Self::parse(parent, state)
    }
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace context of the running task, if it runs inside one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The stored form of the current context ([`TraceContext::stored`]), or empty outside one.
pub fn current_stored() -> String {
    current().map(|c| c.stored()).unwrap_or_default()
}

/// Runs `f` inside `ctx` (as it is: the caller makes the span, see [`span`]); without a
/// context `f` runs in the current one.
pub async fn within<F: Future>(ctx: Option<TraceContext>, f: F) -> F::Output {
    match ctx {
        Some(ctx) => CURRENT.scope(ctx, f).await,
        None => f.await,
    }
}

/// Runs `f` as a new span named `name`: a child of `parent` (or of the current context when
/// `parent` is `None`, or the root of a new trace when there is neither). The span is
/// exported when it ends, with `f`'s outcome as told by `ok`.
pub async fn span<F, T>(
    name: &str,
    parent: Option<TraceContext>,
    f: F,
    ok: impl Fn(&T) -> bool,
) -> T
where
    F: Future<Output = T>,
{
    let ctx = match parent.or_else(current) {
        Some(p) => p.child(),
        None => TraceContext::start(),
    };
    let started = export::Started::now();
    let out = CURRENT.scope(ctx.clone(), f).await;
    export::finish(name, &ctx, started, ok(&out));
    out
}

/// Client interceptor for every gRPC call: puts the current context (if any) in the
/// request's metadata. Use as `XClient::with_interceptor(channel, trace::inject)`.
pub fn inject(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(ctx) = current() {
        let md = req.metadata_mut();
        if let Ok(v) = ctx.traceparent().parse() {
            md.insert(TRACEPARENT, v);
        }
        if let Some(Ok(v)) = (!ctx.state.is_empty()).then(|| ctx.state.parse()) {
            md.insert(TRACESTATE, v);
        }
    }
    Ok(req)
}

/// The context a gRPC request carries in its metadata (the caller's span).
pub fn of_request<T>(req: &tonic::Request<T>) -> Option<TraceContext> {
    let md = req.metadata();
    let parent = md.get(TRACEPARENT)?.to_str().ok()?;
    let state = md.get(TRACESTATE).and_then(|v| v.to_str().ok());
    TraceContext::parse(parent, state)
}

/// Runs a gRPC handler's work `f` as a server span named `name`, a child of the caller's
/// context (from [`of_request`]; a new trace when it sent none).
pub async fn serve<R, F>(name: &str, caller: Option<TraceContext>, f: F) -> Result<R, tonic::Status>
where
    F: Future<Output = Result<R, tonic::Status>>,
{
    span(
        name,
        Some(caller.unwrap_or_else(TraceContext::start)),
        f,
        |r| r.is_ok(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let c = TraceContext::parse(EXAMPLE, Some("congo=t61rcWkgMzE")).expect("valid");
        assert_eq!(c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(c.span_id, 0x00f067aa0ba902b7);
        assert_eq!(c.flags, 1);
        assert_eq!(c.traceparent(), EXAMPLE);
        assert_eq!(c.state, "congo=t61rcWkgMzE");
        assert_eq!(TraceContext::from_stored(&c.stored()), Some(c.clone()));
        let child = c.child();
        assert_eq!(
            (child.trace_id, child.parent_id),
            (c.trace_id, Some(c.span_id))
        );
        assert_ne!(child.span_id, c.span_id);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_far_as_version_00_goes() {
        let c = TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-the-future-holds",
            None,
        )
        .expect("a later version is accepted");
        assert_eq!(
            (c.trace_id, c.flags),
            (0x4bf92f3577b34da6a3ce929d0e0e4736, 1)
        );
    }

    #[test]
    fn oversized_or_binary_tracestate_is_dropped_not_the_trace() {
        let long = "a=".to_owned() + &"b".repeat(TRACESTATE_BYTES_MAX);
        for state in [long.as_str(), "a=\u{7f}"] {
            let c = TraceContext::parse(EXAMPLE, Some(state)).expect("the traceparent stands");
            assert_eq!(c.state, "");
        }
    }

    #[tokio::test]
    async fn the_current_context_follows_the_task_and_reaches_grpc_metadata() {
        assert_eq!(current(), None);
        let ctx = TraceContext::parse(EXAMPLE, None).expect("valid");
        let (seen, md) = within(Some(ctx.clone()), async {
            let req = inject(tonic::Request::new(())).expect("inject");
            (current(), of_request(&req))
        })
        .await;
        assert_eq!(seen, Some(ctx.clone()));
        assert_eq!(md, Some(ctx.clone()));
        let inner = span("child", Some(ctx.clone()), async { current() }, |_| true)
            .await
            .expect("a span has a context");
        assert_eq!(
            (inner.trace_id, inner.parent_id),
            (ctx.trace_id, Some(ctx.span_id))
        );
        assert_eq!(current(), None, "the context ends with its scope");
    }
}
