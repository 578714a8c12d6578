//! A client of the SSE endpoint, as a program (tests, the simulation's clients, benchmarks)
//! uses it: connect with a token and a resume point, read events one by one. It runs on
//! tokio and in the simulation alike (`platform::http`'s client).

use std::time::Duration;

use platform::http::{HttpClient, HttpError, StreamingResponse};

/// Bound on one event's text; a longer one is a protocol error.
const EVENT_BYTES_MAX: usize = 64 * 1024;

/// One server-sent event (comments, such as keep-alives, are skipped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `id:` (empty when the event has none).
    pub id: String,
    /// `event:` (`message` when the event has none).
    pub event: String,
    pub data: String,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Splits an SSE byte stream into events (the WHATWG event-stream format, for the fields
/// this server sends).
#[derive(Debug, Default)]
pub struct Parser {
    buffer: String,
    /// The event being read.
    current: Event,
    has_data: bool,
}

impl Parser {
    /// Feeds `bytes`; the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data || !self.current.id.is_empty() {
                    let mut event = std::mem::take(&mut self.current);
                    if event.event.is_empty() {
                        event.event = "message".into();
                    }
                    out.push(event);
                }
                self.current = Event::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.into(),
                "event" => self.current.event = value.into(),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {} // retry:, and fields this client ignores
            }
        }
        if self.buffer.len() + self.current.data.len() > EVENT_BYTES_MAX {
            return Err(format!("an event longer than {EVENT_BYTES_MAX} bytes"));
        }
        Ok(out)
    }
}

/// An open SSE stream.
#[derive(Debug)]
pub struct SseStream {
    response: StreamingResponse,
    parser: Parser,
    ready: std::collections::VecDeque<Event>,
}

/// Why a stream could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with another status (and a problem+json body).
    #[error("status {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("protocol: {0}")]
    Protocol(String),
}

impl SseStream {
    /// Opens `url` (e.g. `http://host/v1/notifications/stream?kind=order.status`) with
    /// `token`, resuming after `last_event_id` if given; connecting is bounded by `timeout`.
    pub async fn open(
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SseError> {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("accept", "text/event-stream"),
        ];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        let mut response = HttpClient::new(timeout).stream(url, &headers).await?;
        if response.status != 200 {
            let mut body = Vec::new();
            while let Some(Ok(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() > EVENT_BYTES_MAX {
                    break;
                }
            }
            return Err(SseError::Refused {
                status: response.status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(SseStream {
            response,
            parser: Parser::default(),
            ready: Default::default(),
        })
    }

    /// The response's headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.response.headers
    }

    /// The next event; `None` when the server ended the stream or the connection broke.
    pub async fn next(&mut self) -> Option<Result<Event, SseError>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            match self.response.chunk().await? {
                Ok(bytes) => match self.parser.feed(&bytes) {
                    Ok(events) => self.ready.extend(events),
                    Err(e) => return Some(Err(SseError::Protocol(e))),
                },
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// A client of the WebSocket endpoint: the same events as [`SseStream`], from JSON text
/// messages (`type` as the event, `id`, and the message itself as the data).
pub struct WsStream {
    socket:
        tokio_tungstenite::WebSocketStream<platform::http::io::FlushWritten<tokio::net::TcpStream>>,
    /// The close frame's code and reason, once the server closed.
    pub closed: Option<(u16, String)>,
}

impl WsStream {
    /// Connects to `url` (`ws://host:port/v1/notifications/ws?since=…`) with `token`.
    pub async fn open(url: &str, token: &str, timeout: Duration) -> Result<Self, SseError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let connect = async {
            let mut request = url
                .into_client_request()
                .map_err(|e| SseError::Protocol(e.to_string()))?;
            let auth = format!("Bearer {token}")
                .parse()
                .map_err(|_| SseError::Protocol("a token that is not a header value".into()))?;
            request.headers_mut().insert("authorization", auth);
            let host = request
                .uri()
                .authority()
                .map(|a| format!("{}:{}", a.host(), a.port_u16().unwrap_or(80)))
                .ok_or_else(|| SseError::Protocol(format!("no host in {url}")))?;
            let stream = tokio::net::TcpStream::connect(host.as_str())
                .await
                .map_err(|source| {
                    SseError::Http(HttpError::Connect {
                        addr: host.clone(),
                        source,
                    })
                })?;
            let stream = platform::http::io::FlushWritten::new(stream);
            match tokio_tungstenite::client_async(request, stream).await {
                Ok((socket, _)) => Ok(WsStream {
                    socket,
                    closed: None,
                }),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    Err(SseError::Refused {
                        status: response.status().as_u16(),
                        body: String::from_utf8_lossy(
                            response.body().as_deref().unwrap_or_default(),
                        )
                        .into_owned(),
                    })
                }
                Err(e) => Err(SseError::Protocol(e.to_string())),
            }
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| SseError::Http(HttpError::Timeout(timeout)))?
    }

    /// The next event; `None` once the server closed (see [`WsStream::closed`]) or the
    /// connection broke.
    pub async fn next(&mut self) -> Option<Result<Event, SseError>> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => {
                    let json: serde_json::Value = match serde_json::from_str(text.as_str()) {
                        Ok(j) => j,
                        Err(e) => return Some(Err(SseError::Protocol(e.to_string()))),
                    };
                    return Some(Ok(Event {
                        id: json["id"].as_str().unwrap_or_default().to_owned(),
                        event: json["type"].as_str().unwrap_or_default().to_owned(),
                        data: text.as_str().to_owned(),
                    }));
                }
                Ok(Message::Close(frame)) => {
                    self.closed = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    }));
                    return None;
                }
                Ok(_) => continue, // pings are answered by the socket itself
                Err(e) => return Some(Err(SseError::Protocol(e.to_string()))),
            }
        }
    }

    /// Sends a text message (clients have nothing to say; for tests of the size bound).
    pub async fn send_text(&mut self, text: String) -> Result<(), SseError> {
        use futures::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .map_err(|e| SseError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_splits_events_across_chunks_and_skips_comments() {
        let mut p = Parser::default();
        assert!(p
            .feed(b"retry: 2000\n\n: keep-alive\n\nid: e:1\nevent: order.st")
            .expect("ok")
            .is_empty());
        let events = p
            .feed(b"atus\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n")
            .expect("ok");
        assert_eq!(
            events,
            vec![
                Event {
                    id: "e:1".into(),
                    event: "order.status".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    id: String::new(),
                    event: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
        assert!(p.feed(&vec![b'a'; EVENT_BYTES_MAX + 1]).is_err());
    }
}
