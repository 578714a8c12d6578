use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};

/// Bound on a response body read by [`HttpClient`].
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// Errors of an outgoing HTTP call.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid url {0}")]
    InvalidUrl(String),
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("http: {0}")]
    Protocol(String),
    #[error("status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("body does not decode: {0}")]
    Decode(String),
}

impl HttpError {
    /// Whether the same request may succeed later (network trouble or a 5xx/429 answer).
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout(_) | HttpError::Protocol(_) => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            HttpError::InvalidUrl(_) | HttpError::Decode(_) => false,
        }
    }
}

/// A minimal JSON-over-HTTP/1.1 client: one connection per request, a timeout on the whole
/// exchange. Built on hyper's connection API over `tokio::net::TcpStream`, so it runs in the
/// simulation too.
#[derive(Clone, Debug)]
pub struct HttpClient {
    /// Bound on connect + request + response.
    pub timeout: Duration,
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Self {
        HttpClient { timeout }
    }

    /// `POST url` with a JSON body and extra headers; decodes a 2xx JSON answer.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &B,
    ) -> Result<R, HttpError> {
        let body = serde_json::to_vec(body).map_err(|e| HttpError::Decode(e.to_string()))?;
        self.call("POST", url, headers, Some(body)).await
    }

    /// `GET url`; decodes a 2xx JSON answer.
    pub async fn get_json<R: DeserializeOwned>(&self, url: &str) -> Result<R, HttpError> {
        self.call("GET", url, &[], None).await
    }

    /// `GET url` with extra headers (e.g. `authorization`); decodes a 2xx JSON answer.
    pub async fn get_json_with<R: DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<R, HttpError> {
        self.call("GET", url, headers, None).await
    }

    /// Sends one request and returns whatever the server answered (any status); an error only
    /// when no answer came.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, HttpError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| HttpError::Decode(e.to_string()))?;
        self.send_bytes(method, url, headers, body.map(|b| (b, "application/json")))
            .await
    }

    /// Sends one request with a body of `content_type` (when given) and returns whatever the
    /// server answered; an error only when no answer came. Headers in `headers` are sent as
    /// they are (an object store checks the signed ones).
    pub async fn send_bytes(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<HttpResponse, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(method, url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<R, HttpError> {
        let timeout = self.timeout;
        let body = body.map(|b| (b, "application/json"));
        let response =
            match tokio::time::timeout(timeout, self.exchange(method, url, headers, body)).await {
                Ok(r) => r?,
                Err(_) => return Err(HttpError::Timeout(timeout)),
            };
        if !(200..300).contains(&response.status) {
            return Err(HttpError::Status {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            });
        }
        serde_json::from_slice(&response.body).map_err(|e| HttpError::Decode(e.to_string()))
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<HttpResponse, HttpError> {
        let open = self.open(method, url, headers, body).await?;
        let body = Limited::new(open.body, RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?
            .to_bytes();
        Ok(HttpResponse {
            status: open.status,
            headers: open.headers,
            body,
        })
    }

    /// Sends one request and returns the answer's status and headers within the timeout,
    /// with its body still to read, for as long as it lasts (a stream of events).
    pub async fn stream(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<StreamingResponse, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.open("GET", url, headers, None)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    async fn open(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<StreamingResponse, HttpError> {
        let uri: http::Uri = url.parse().map_err(|_| HttpError::InvalidUrl(url.into()))?;
        let authority = uri
            .authority()
            .ok_or_else(|| HttpError::InvalidUrl(url.into()))?
            .clone();
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let stream = tokio::net::TcpStream::connect(addr.as_str())
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
            super::io::FlushWritten::new(stream),
        ))
        .await
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
        // The connection task ends when the exchange is over (the sender and the body are
        // dropped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority.as_str());
        let has_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if let Some((_, content_type)) = body.as_ref().filter(|_| !has_type) {
            req = req.header(http::header::CONTENT_TYPE, *content_type);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(
                body.map(|(b, _)| b).unwrap_or_default(),
            )))
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(StreamingResponse {
            status,
            headers,
            body: resp.into_body(),
        })
    }
}

/// An answer of [`HttpClient::stream`] whose body is still arriving.
#[derive(Debug)]
pub struct StreamingResponse {
    pub status: u16,
    /// Header names lower-case, values that are text.
    pub headers: Vec<(String, String)>,
    pub body: hyper::body::Incoming,
}

impl StreamingResponse {
    /// The next piece of the body; `None` when it ended (or the connection broke).
    pub async fn chunk(&mut self) -> Option<Result<Bytes, HttpError>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue, // trailers
                },
                Err(e) => return Some(Err(HttpError::Protocol(e.to_string()))),
            }
        }
    }
}

/// An answer of [`HttpClient::send`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-case, values that are text.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json<R: DeserializeOwned>(&self) -> Result<R, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode(e.to_string()))
    }
}
