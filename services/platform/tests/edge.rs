//! The HTTP edge (`platform::http::serve`) as a client meets it on real sockets: a stop lets
//! the requests under way finish and takes no new connection; an HTTP/2 request's header
//! list is bounded by `HEADER_BYTES_MAX` (named, above hyper's own default) and one over it is
//! answered 431 without reaching a handler. The HTTP/1.1 bounds are in the marketplace's stack
//! test `security`.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{extract::State, routing::get, Router};
use platform::{
    http::{serve, HEADER_BYTES_MAX},
    Shutdown,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, Notify},
    time::{timeout, Instant},
};

/// Bound on anything the server should do at once.
const BOUND: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Hooks {
    /// Told when `/slow` began.
    arrived: mpsc::Sender<()>,
    /// `/slow` answers once this is notified.
    release: Arc<Notify>,
    /// Requests that reached a handler.
    handled: Arc<AtomicUsize>,
}

fn router(hooks: Hooks) -> Router {
    Router::new()
        .route(
            "/slow",
            get(|State(h): State<Hooks>| async move {
                h.handled.fetch_add(1, Ordering::SeqCst);
                let _ = h.arrived.send(()).await;
                h.release.notified().await;
                "done"
            }),
        )
        .route(
            "/",
            get(|State(h): State<Hooks>| async move {
                h.handled.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .with_state(hooks)
}

/// A server on a free port, its stop, its task, and the hooks of its handlers.
async fn start() -> (
    SocketAddr,
    platform::shutdown::ShutdownTrigger,
    tokio::task::JoinHandle<()>,
    Hooks,
    mpsc::Receiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived, arrivals) = mpsc::channel(4);
    let hooks = Hooks {
        arrived,
        release: Arc::new(Notify::new()),
        handled: Arc::new(AtomicUsize::new(0)),
    };
    let (stop, shutdown) = Shutdown::new();
    let server = tokio::spawn(serve(listener, router(hooks.clone()), shutdown));
    (addr, stop, server, hooks, arrivals)
}

#[tokio::test]
async fn a_stop_lets_the_requests_under_way_finish_and_takes_no_new_connection() {
    let (addr, stop, server, hooks, mut arrivals) = start().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    timeout(BOUND, arrivals.recv())
        .await
        .expect("the request reached its handler");

    stop.trigger();
    // The listener closes at once: a new connection is refused (polled, bounded).
    let deadline = Instant::now() + BOUND;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "new connections were still taken {BOUND:?} after the stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !server.is_finished(),
        "the server returned with a request under way"
    );

    hooks.release.notify_one();
    let mut answer = String::new();
    timeout(BOUND, client.read_to_string(&mut answer))
        .await
        .expect("the answer and the connection's end come at once")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    timeout(BOUND, server)
        .await
        .expect("the server returns once its last request is answered")
        .unwrap();
}

// ---- a raw HTTP/2 client: every client library refuses to send a header list over the
// server's advertised bound, so the frames are written by hand (RFC 9113, HPACK RFC 7541).

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose upper bits are `first`.
fn int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// The HPACK size of one header (RFC 7541 4.1), which `SETTINGS_MAX_HEADER_LIST_SIZE` counts.
fn entry_size(name: &str, value: usize) -> usize {
    name.len() + value + 32
}

/// A `GET /` whose header list counts about `list_bytes`: one 4,000-byte header put in the
/// dynamic table, then referred to again by index (one byte each), so the frame stays small.
fn get_with_header_list(list_bytes: usize) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84]; // :method GET, :scheme http, :path /
    block.push(0x01); // :authority, literal without indexing (indexed name 1)
    string(&mut block, b"edge");
    let value = vec![b'v'; 4_000];
    block.push(0x40); // literal with incremental indexing, new name
    string(&mut block, b"x-big");
    string(&mut block, &value);
    let copies = list_bytes / entry_size("x-big", value.len());
    for _ in 1..copies {
        block.push(0x80 | 62); // the newest dynamic table entry
    }
    block
}

/// What the server sent for one stream: the first HEADERS block, or why there is none.
async fn answer_to(conn: &mut TcpStream, stream: u32) -> Result<Vec<u8>, String> {
    loop {
        let mut head = [0u8; 9];
        timeout(BOUND, conn.read_exact(&mut head))
            .await
            .map_err(|_| format!("no frame within {BOUND:?}"))?
            .map_err(|e| format!("the connection ended: {e}"))?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await.unwrap();
        match kind {
            SETTINGS if flags & ACK == 0 => {
                conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap()
            }
            HEADERS if id == stream => return Ok(payload),
            RST_STREAM if id == stream => return Err(format!("stream reset: {payload:?}")),
            GOAWAY => return Err(format!("GOAWAY: {payload:?}")),
            DATA | HEADERS | RST_STREAM | SETTINGS => {}
            _ => {}
        }
    }
}

/// `:status 200` is index 8 of the static table; 431 is not in it, so it comes as a literal
/// of indexed name 8, its value "431" plain or Huffman-coded (h2 codes it: 0x83 69 90 ff).
fn status_of(block: &[u8]) -> Option<u16> {
    if block.first() == Some(&0x88) {
        return Some(200);
    }
    let huffman_431: &[u8] = &[0x83, 0x69, 0x90, 0xff];
    let plain_431: &[u8] = &[0x03, b'4', b'3', b'1'];
    let value = block.get(1..5)?;
    (matches!(block.first(), Some(0x08 | 0x48 | 0x18))
        && (value == huffman_431 || value == plain_431))
        .then_some(431)
}

#[tokio::test]
async fn an_http2_header_list_over_the_named_bound_is_answered_431_and_reaches_no_handler() {
    let (addr, stop, server, hooks, _arrivals) = start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();

    // Three quarters of the bound: above hyper's default (16 KiB), so only the named bound
    // lets it through.
    let under = get_with_header_list(HEADER_BYTES_MAX * 3 / 4);
    assert!(under.len() < 16_384, "one frame");
    conn.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &under))
        .await
        .unwrap();
    let block = answer_to(&mut conn, 1).await.unwrap();
    assert_eq!(
        status_of(&block),
        Some(200),
        "a header list under the bound"
    );
    assert_eq!(hooks.handled.load(Ordering::SeqCst), 1);

    let over = get_with_header_list(HEADER_BYTES_MAX + 4 * 1024);
    conn.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 3, &over))
        .await
        .unwrap();
    let block = answer_to(&mut conn, 3).await.unwrap();
    assert_eq!(
        status_of(&block),
        Some(431),
        "a header list over the bound: {block:?}"
    );
    assert_eq!(
        hooks.handled.load(Ordering::SeqCst),
        1,
        "the oversized request reached a handler"
    );
    drop(conn);
    stop.trigger();
    timeout(BOUND, server).await.unwrap().unwrap();
}
