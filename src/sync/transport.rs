//! The network seam. The sync engine speaks to the endpoint only through [`Transport`], so the
//! same engine runs over real HTTP ([`HttpTransport`]), behind a fault injector
//! ([`super::faults::FaultyTransport`]) and in a simulation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::pinning;
/// The TLS settings, owned by [`super::pinning`]; re-exported where they were first defined.
pub use super::pinning::TlsConfig;

/// An HTTP method the protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Head,
    Delete,
    Options,
}

/// A request, relative to the endpoint's base URL. `Debug` prints header names only (the
/// `Authorization` value is a token) and the body's length.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query, e.g. `/v1/uploads/abc`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Fault-injection seam: send only this many body bytes, then break the connection (a
    /// link dropping mid-upload). `None` in normal operation.
    pub abort_body_after: Option<usize>,
    /// How long the whole exchange may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .field("abort_body_after", &self.abort_body_after)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>, timeout: Duration) -> Self {
        Request {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            abort_body_after: None,
            timeout,
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

/// A response. The body is at most the limit the caller passed to [`Transport::send`].
/// `Debug` prints header names only and the body's length (an activation answer carries the
/// device's token).
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Response {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an exchange produced no response. All of these are transient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("could not connect")]
    Connect,
    #[error("timed out")]
    Timeout,
    #[error("connection broken: {0}")]
    Broken(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("TLS or pinning failure")]
    Tls,
}

/// The boxed future a transport returns.
pub type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response, TransportError>> + Send + 'a>>;

/// Sends one request and reads a response of at most `limit` body bytes.
pub trait Transport: Send + Sync {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_>;
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        (**self).send(req, limit)
    }
}

/// The production transport: HTTP/1.1 or HTTP/2 over rustls (reqwest). Plain `http://` is
/// accepted only for loopback (the reference endpoint in tests and demos).
pub struct HttpTransport {
    base: String,
    client: reqwest::Client,
}

/// How long to wait for a TCP+TLS connection before calling the attempt failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an idle kept-alive connection is reused: below the server's own idle timeout
/// (the reference endpoint closes a connection 20 s after its last answer; nginx 75 s, cloud
/// load balancers 60 s), so a request never goes out on a connection the server is closing —
/// on a 2G link, where lanes wait many seconds for a PATCH turn, that race broke PATCHes
/// ("error sending request") and rescheduled their capture.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

impl HttpTransport {
    pub fn new(base_url: &str, tls: &TlsConfig) -> crate::Result<Self> {
        let base = base_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base)
            .map_err(|_| crate::Error::Decode("endpoint URL is not a URL".into()))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => {
                return Err(crate::Error::Decode(
                    "endpoint URL must be https (http only on loopback)".into(),
                ));
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // The base URL was checked (https, pinned host); a redirect must not move a body
            // or a token anywhere else.
            .redirect(reqwest::redirect::Policy::none());
        if url.scheme() == "https" {
            builder = builder.use_preconfigured_tls(pinning::client_config(tls)?);
        }
        let client = builder
            .build()
            .map_err(|e| crate::Error::Internal(format!("HTTP client: {e}")))?;
        Ok(HttpTransport { base, client })
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

impl Transport for HttpTransport {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let resp = self.request(req).send().await.map_err(classify)?;
            read_response(resp, limit).await
        })
    }
}

impl HttpTransport {
    /// The reqwest request for `req`: method, URL, timeout, headers and body.
    fn request(&self, req: Request) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .request(
                reqwest_method(req.method),
                format!("{}{}", self.base, req.path),
            )
            .timeout(req.timeout);
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        // A POST, PUT or PATCH without a body still states its length: hyper sends no
        // length for an empty body, and some proxies answer such a request 411
        // (docs/protocol.md §6.4, the tus creation POST).
        let states_length = matches!(req.method, Method::Post | Method::Put | Method::Patch);
        if states_length && req.body.is_empty() && req.abort_body_after.is_none() {
            rb = rb.header("content-length", "0");
        }
        match req.abort_body_after {
            None => rb.body(req.body),
            Some(n) => with_cut_body(rb, &req.body, n),
        }
    }
}

fn reqwest_method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Head => reqwest::Method::HEAD,
        Method::Delete => reqwest::Method::DELETE,
        Method::Options => reqwest::Method::OPTIONS,
    }
}

/// A body that announces its whole length but breaks after its first `n` bytes (fault
/// injection: a link dropped mid-body).
fn with_cut_body(rb: reqwest::RequestBuilder, body: &[u8], n: usize) -> reqwest::RequestBuilder {
    let total = body.len();
    let head = bytes::Bytes::from(body[..n.min(total)].to_vec());
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(head),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected link drop",
        )),
    ];
    rb.header("content-length", total.to_string())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
}

/// Reads an answer: its status, its headers (those that are text) and its body, refused as
/// soon as it is known to pass `limit` bytes.
async fn read_response(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Response, TransportError> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    if let Some(len) = resp.content_length()
        && len > limit as u64
    {
        return Err(TransportError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > limit {
            return Err(TransportError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn classify(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            if s.to_string().to_ascii_lowercase().contains("certificate") {
                return TransportError::Tls;
            }
            src = s.source();
        }
        TransportError::Connect
    } else {
        TransportError::Broken(e.without_url().to_string())
    }
}
