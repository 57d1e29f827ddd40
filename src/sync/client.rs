//! The protocol client: one function per exchange, each turning an HTTP answer into a typed
//! outcome. Classification of failures happens here, once:
//! - no response (connect, timeout, reset), 5xx, 429, and any 4xx whose body is not a
//!   documented [`ErrorBody`] → [`Failure::Transient`] (retry with backoff);
//! - a documented [`ErrorBody`] → [`Failure::Refused`] with its [`Reason`], whose
//!   [`Reason::action`] decides: retry, re-upload, re-activate or quarantine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::retry::parse_retry_after;
use super::transport::{Method, Request, Response, Transport, TransportError};
use crate::clock::SharedClock;
use crate::error::Result;
use crate::model::{CaptureId, PartKind};
use crate::protocol::{self, Action, ErrorBody, Reason, limits, routes, tus};

/// Why an exchange did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again later (not before `retry_after` if given).
    Transient {
        what: String,
        retry_after: Option<Duration>,
    },
    /// The endpoint refused with a documented reason.
    Refused {
        reason: Reason,
        detail: String,
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// What the engine does about it.
    pub fn action(&self) -> Action {
        match self {
            Failure::Transient { .. } => Action::Retry,
            Failure::Refused { reason, .. } => reason.action(),
        }
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Transient { retry_after, .. } | Failure::Refused { retry_after, .. } => {
                *retry_after
            }
        }
    }
    /// A short description without personal data.
    pub fn describe(&self) -> String {
        match self {
            Failure::Transient { what, .. } => what.clone(),
            Failure::Refused { reason, .. } => reason.code().to_string(),
        }
    }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        Failure::Transient {
            what: e.to_string(),
            retry_after: None,
        }
    }
}

/// The outcome of one exchange; the outer `Result` is for local errors (store, crypto).
pub type Outcome<T> = std::result::Result<T, Failure>;

/// The answer to a PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchResult {
    /// Accepted; the new offset.
    Accepted(u64),
    /// The server is at another offset: ask it (HEAD) and continue from there.
    OffsetMismatch,
    /// The bytes arrived damaged (tus 460); nothing was stored.
    ChecksumMismatch,
    /// The upload expired or is unknown: create it again.
    Gone,
}

/// The `/v1/uploads/<id>` path of a tus `Location` (relative, or absolute on any host: only
/// the path is kept), if it names an upload with a plain id (letters, digits, `-`, `_`).
fn upload_path(location: &str) -> Option<String> {
    let prefix = format!("{}/", routes::UPLOADS);
    let path = &location[location.find(&prefix)?..];
    let id = &path[prefix.len()..];
    let plain = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| path.to_string())
}

/// Talks protocol v1 through a [`Transport`]. Every exchange takes `&self`, so a sync run
/// keeps several in flight at once (ADR 0022); the counters are shared by them.
pub struct Client<'t> {
    transport: &'t dyn Transport,
    token: Option<String>,
    clock: SharedClock,
    /// Per-request timeout ceiling (the run's remaining budget may cut it shorter).
    pub request_timeout: Duration,
    /// Body bytes of requests that were answered.
    bytes_sent: AtomicU64,
    /// The endpoint's clock minus the device's, from the last answer's `Date` header (v1.1,
    /// §6.5: kept for the record; the endpoint corrects skew from `sent_at`).
    clock_offset: Mutex<Option<time::Duration>>,
    /// The quickest answered exchange so far: no exchange is answered sooner on this link.
    quickest: Mutex<Option<Duration>>,
}

/// Longest a single exchange may take: a 64 KiB PATCH over a 2G link (≈ 30 kbit/s) needs ≈ 20 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

impl<'t> Client<'t> {
    pub fn new(transport: &'t dyn Transport, clock: SharedClock) -> Self {
        Client {
            transport,
            token: None,
            clock,
            request_timeout: REQUEST_TIMEOUT,
            bytes_sent: AtomicU64::new(0),
            clock_offset: Mutex::new(None),
            quickest: Mutex::new(None),
        }
    }

    /// The quickest exchange answered so far (its whole round trip), if any.
    pub fn quickest_exchange(&self) -> Option<Duration> {
        *self.quickest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Body bytes of requests that were answered.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// The endpoint's clock minus the device's, from the last answer's `Date` header.
    pub fn clock_offset(&self) -> Option<time::Duration> {
        *self.clock_offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn req(&self, method: Method, path: &str, timeout: Duration) -> Request {
        let mut r = Request::new(method, path, timeout.min(self.request_timeout));
        if let Some(t) = &self.token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r
    }

    async fn exchange(&self, req: Request, limit: usize) -> Outcome<Response> {
        let len = req.body.len() as u64;
        let sent_at = self.clock.instant();
        let resp = self.transport.send(req, limit).await?;
        let took = self.clock.instant().saturating_duration_since(sent_at);
        {
            let mut q = self.quickest.lock().unwrap_or_else(|e| e.into_inner());
            *q = Some(q.map_or(took, |t| t.min(took)));
        }
        self.bytes_sent.fetch_add(len, Ordering::Relaxed);
        if let Some(date) = resp
            .header("date")
            .and_then(|d| httpdate::parse_http_date(d).ok())
        {
            let offset = time::OffsetDateTime::from(date) - self.clock.now();
            *self.clock_offset.lock().unwrap_or_else(|e| e.into_inner()) = Some(offset);
        }
        Ok(resp)
    }

    /// Turns a non-success response into a failure.
    fn failure(&self, resp: &Response) -> Failure {
        let retry_after = resp
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let documented: Option<ErrorBody> =
            protocol::decode(&resp.body, limits::MAX_RESPONSE_BYTES, "error body").ok();
        match documented {
            Some(body) if resp.status < 500 && body.reason != Reason::Other => Failure::Refused {
                reason: body.reason,
                detail: body.detail,
                retry_after,
            },
            _ => Failure::Transient {
                what: format!("HTTP {}", resp.status),
                retry_after,
            },
        }
    }

    async fn cbor_call<T: serde::de::DeserializeOwned>(
        &self,
        req: Request,
        ok: &[u16],
        limit: usize,
        what: &'static str,
    ) -> Result<Outcome<(u16, T, Vec<u8>)>> {
        let resp = match self.exchange(req, limit).await {
            Ok(r) => r,
            Err(f) => return Ok(Err(f)),
        };
        if !ok.contains(&resp.status) {
            return Ok(Err(self.failure(&resp)));
        }
        match protocol::decode::<T>(&resp.body, limit, what) {
            Ok(v) => Ok(Ok((resp.status, v, resp.body))),
            // An answer that does not decode is treated like a garbled transmission.
            Err(_) => Ok(Err(Failure::Transient {
                what: format!("undecodable {what}"),
                retry_after: None,
            })),
        }
    }

    /// Encodes a request body, refusing one over its documented limit before sending it.
    fn encode_bounded<T: serde::Serialize>(
        msg: &T,
        limit: usize,
        what: &'static str,
    ) -> Result<Vec<u8>> {
        let body = protocol::encode(msg)?;
        if body.len() > limit {
            return Err(crate::Error::TooLarge {
                what,
                len: body.len() as u64,
                limit: limit as u64,
            });
        }
        Ok(body)
    }

    fn cbor_request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Request {
        self.req(method, path, timeout)
            .header("content-type", protocol::CBOR)
            .header("accept", protocol::CBOR)
            .body(body)
    }

    pub async fn register(
        &self,
        msg: &protocol::RegisterRequest,
        timeout: Duration,
    ) -> Result<Outcome<protocol::RegisterResponse>> {
        let req = self.cbor_request(
            Method::Post,
            routes::REGISTER,
            Self::encode_bounded(msg, limits::MAX_REGISTER_BYTES, "registration")?,
            timeout,
        );
        Ok(self
            .cbor_call(
                req,
                &[201],
                limits::MAX_RESPONSE_BYTES,
                "registration answer",
            )
            .await?
            .map(|r| r.1))
    }

    pub async fn activate(
        &self,
        msg: &protocol::ActivateRequest,
        timeout: Duration,
    ) -> Result<Outcome<protocol::ActivateResponse>> {
        let req = self.cbor_request(
            Method::Post,
            routes::ACTIVATE,
            Self::encode_bounded(msg, limits::MAX_ACTIVATE_BYTES, "activation")?,
            timeout,
        );
        Ok(self
            .cbor_call(req, &[200], limits::MAX_CATALOG_BYTES, "activation answer")
            .await?
            .map(|r| r.1))
    }

    pub async fn processes(&self, timeout: Duration) -> Result<Outcome<protocol::ProcessList>> {
        let req = self
            .req(Method::Get, routes::PROCESSES, timeout)
            .header("accept", protocol::CBOR);
        Ok(self
            .cbor_call(req, &[200], limits::MAX_CATALOG_BYTES, "process catalog")
            .await?
            .map(|r| r.1))
    }

    /// Creates a tus upload for a part; returns its URL path and expiry.
    pub async fn create_upload(
        &self,
        id: &CaptureId,
        kind: PartKind,
        length: u64,
        timeout: Duration,
    ) -> Outcome<(String, Option<String>)> {
        let meta = format!(
            "capture_id {},kind {}",
            B64.encode(id.to_string()),
            B64.encode(kind.name())
        );
        let req = self
            .req(Method::Post, routes::UPLOADS, timeout)
            .header("tus-resumable", tus::RESUMABLE)
            .header("upload-length", length.to_string())
            .header("upload-metadata", meta);
        let resp = self.exchange(req, limits::MAX_RESPONSE_BYTES).await?;
        if resp.status != 201 {
            return Err(self.failure(&resp));
        }
        let Some(loc) = resp.header("location") else {
            return Err(Failure::Transient {
                what: "upload created without Location".into(),
                retry_after: None,
            });
        };
        // Keep the path: the endpoint's base URL is configured separately. Only an upload
        // path is kept; any other Location would become the next request's path, token
        // included, after the base URL (`.evil.example/x`: another host). Found by fuzzing.
        let Some(path) = upload_path(loc) else {
            return Err(Failure::Transient {
                what: "upload created with a Location that is not an upload path".into(),
                retry_after: None,
            });
        };
        Ok((path, resp.header("upload-expires").map(str::to_string)))
    }

    /// Asks the server how much of an upload it holds; `None` if it is gone.
    pub async fn upload_offset(&self, url: &str, timeout: Duration) -> Outcome<Option<u64>> {
        let req = self
            .req(Method::Head, url, timeout)
            .header("tus-resumable", tus::RESUMABLE);
        let resp = self.exchange(req, limits::MAX_RESPONSE_BYTES).await?;
        match resp.status {
            200 | 204 => match resp
                .header("upload-offset")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(o) => Ok(Some(o)),
                None => Err(Failure::Transient {
                    what: "HEAD without Upload-Offset".into(),
                    retry_after: None,
                }),
            },
            404 | 410 => Ok(None),
            _ => Err(self.failure(&resp)),
        }
    }

    /// Sends `bytes` at `offset`, with their SHA-256 as the tus checksum.
    pub async fn patch(
        &self,
        url: &str,
        offset: u64,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Outcome<PatchResult> {
        let checksum = format!("sha256 {}", B64.encode(crate::crypto::sha256(&bytes)));
        let req = self
            .req(Method::Patch, url, timeout)
            .header("tus-resumable", tus::RESUMABLE)
            .header("content-type", tus::OFFSET_STREAM)
            .header("upload-offset", offset.to_string())
            .header("upload-checksum", checksum)
            .body(bytes);
        let resp = self.exchange(req, limits::MAX_RESPONSE_BYTES).await?;
        match resp.status {
            204 | 200 => match resp
                .header("upload-offset")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(o) => Ok(PatchResult::Accepted(o)),
                None => Err(Failure::Transient {
                    what: "PATCH without Upload-Offset".into(),
                    retry_after: None,
                }),
            },
            409 => Ok(PatchResult::OffsetMismatch),
            s if s == tus::CHECKSUM_MISMATCH => Ok(PatchResult::ChecksumMismatch),
            404 | 410 => Ok(PatchResult::Gone),
            _ => Err(self.failure(&resp)),
        }
    }

    /// Commits a capture (a v1.1 signed commit); returns the HTTP status and the signed
    /// receipt.
    pub async fn commit(
        &self,
        id: &CaptureId,
        msg: &protocol::SignedCommit,
        timeout: Duration,
    ) -> Result<Outcome<(u16, protocol::SignedReceipt)>> {
        let id = id.to_string();
        let req = self
            .cbor_request(
                Method::Put,
                &format!("{}/{id}", routes::SUPPORTS),
                Self::encode_bounded(msg, limits::MAX_SIGNED_COMMIT_BYTES, "commit")?,
                timeout,
            )
            .header("idempotency-key", id);
        Ok(self
            .cbor_call(req, &[200, 201], limits::MAX_RESPONSE_BYTES, "receipt")
            .await?
            .map(|(s, r, _)| (s, r)))
    }
}
