//! HTTP helpers shared by the routes: bounded body reading (each body within its limit, all
//! bodies being read within one memory budget), CBOR answers, headers, times.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use apoyo_sync::wire::{self as protocol, Reason};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::state::AppState;

/// How fast a request body must keep coming: never a pause longer than `idle`, and at least
/// `min_rate` bytes a second over each `idle`-long window (0: no rate check). Never a deadline
/// for the whole body: an honest upload over a slow link takes as long as it takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub idle: Duration,
    pub min_rate: u32,
}

impl Pace {
    /// The pace the endpoint is configured with.
    pub(crate) fn of(st: &AppState) -> Pace {
        let cfg = &st.inner().cfg;
        Pace {
            idle: cfg.body_idle_timeout,
            min_rate: cfg.body_min_rate,
        }
    }
}

/// Counts a body's bytes per window and says when a window ended below the minimum rate.
struct RateWindow {
    pace: Pace,
    started: tokio::time::Instant,
    bytes: u64,
}

impl RateWindow {
    fn new(pace: Pace) -> Self {
        RateWindow {
            pace,
            started: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Adds `n` bytes; `false` when a full window passed with fewer than it needed.
    fn add(&mut self, n: usize) -> bool {
        self.bytes += n as u64;
        let elapsed = self.started.elapsed();
        if self.pace.min_rate == 0 || elapsed < self.pace.idle {
            return true;
        }
        let needed = (u64::from(self.pace.min_rate) as f64 * elapsed.as_secs_f64()) as u64;
        let ok = self.bytes >= needed;
        self.started = tokio::time::Instant::now();
        self.bytes = 0;
        ok
    }
}

/// Reads a request body of at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before reading anything; a body without one is refused as soon as it passes the
/// limit, so at most `limit` bytes are ever buffered. A body cut short (client gone) is refused,
/// and so is one that sends nothing for `pace.idle` or comes slower than `pace.min_rate`
/// (`408`, reason `other`: a device retries it).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    pace: Pace,
    what: &str,
) -> Result<ReadBody, ApiError> {
    let idle = pace.idle;
    let declared = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::malformed("Content-Length is not a number"))?,
        ),
    };
    if let Some(n) = declared
        && n > limit as u64
    {
        // Read and drop what the client is already sending (up to a bound) before answering.
        // Answering at once and closing with unread bytes makes the kernel reset the
        // connection, and the client may never read the 413 (it sees a broken request).
        if n <= DRAIN_LIMIT {
            drain(body, DRAIN_LIMIT, idle).await;
        }
        return Err(ApiError::too_large(format!(
            "{what} is {n} bytes, the limit is {limit}"
        )));
    }
    let mut body = body;
    // Reserve at most one frame's worth up front: a declared length is only a claim, and
    // buffers reserved for bodies that never come would let idle clients hold memory.
    let mut buf = BodyBlocks::new(declared.map_or(INITIAL_BUFFER, |n| n as usize));
    let mut window = RateWindow::new(pace);
    loop {
        let Ok(next) = tokio::time::timeout(idle, body.frame()).await else {
            return Err(ApiError::with_status(
                408,
                Reason::Other,
                format!("{what}: no bytes for {} s", idle.as_secs_f32()),
            ));
        };
        let Some(frame) = next else { break };
        let frame =
            frame.map_err(|_| ApiError::malformed(format!("{what}: the body was cut short")))?;
        if let Ok(data) = frame.into_data() {
            if !window.add(data.len()) {
                return Err(ApiError::with_status(
                    408,
                    Reason::Other,
                    format!("{what}: slower than {} bytes a second", pace.min_rate),
                ));
            }
            if buf.len() + data.len() > limit {
                return Err(ApiError::too_large(format!(
                    "{what} is over the limit of {limit} bytes"
                )));
            }
            if !buf.push(&data) {
                return Err(busy_receiving());
            }
        }
    }
    if let Some(n) = declared
        && n != buf.len() as u64
    {
        return Err(ApiError::malformed(format!(
            "{what}: the body was cut short"
        )));
    }
    Ok(buf.into_body())
}

/// A body's share of the body budget, held until the request that read it is answered.
pub(crate) type BodyBudget = Option<OwnedSemaphorePermit>;

/// A body read whole, in one buffer, with its share of the body budget: the handler keeps
/// `budget` until it answers, so a body waiting for the database or a worker thread still
/// counts (review of issue 17).
pub(crate) struct ReadBody {
    pub(crate) bytes: Vec<u8>,
    pub(crate) budget: BodyBudget,
}

/// The most a body buffer reserves before bytes arrive.
const INITIAL_BUFFER: usize = 64 * 1024;

/// What all the bodies being read at once may hold in memory together, in [`BUDGET_UNIT`]s:
/// 128 MiB. One body may take its route's whole limit (a registration 2 MiB + 64 KiB), so
/// without this, clients that send bodies quickly and then trickle their last bytes would hold
/// `max_connections` × that (≈ 8 GiB at the 4096 cap; ≈ 500 MiB measured at 300).
const BODY_BUDGET_UNITS: usize = 2048;
/// The budget's unit: each block of a body (at most this long) takes one.
const BUDGET_UNIT: usize = 64 * 1024;
/// `Retry-After` of a body refused because the budget is spent.
const BUDGET_RETRY_AFTER_SECS: u64 = 5;

/// The body budget of this process (every endpoint in it).
static BODY_BUDGET: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(BODY_BUDGET_UNITS)));

/// `503 unavailable`: the body budget is spent; the device sends the body again later.
fn busy_receiving() -> ApiError {
    ApiError::new(
        Reason::Unavailable,
        "the endpoint is receiving too many bodies at once; retry",
    )
    .retry_after(BUDGET_RETRY_AFTER_SECS)
}

/// A body's bytes as they arrive, in blocks of at most [`BUDGET_UNIT`] each taken from
/// [`BODY_BUDGET`] (given back when the body has been read or refused). Blocks are never
/// reallocated, so a body held at any length takes that length, rounded up to a block.
struct BodyBlocks {
    blocks: Vec<Vec<u8>>,
    held: Option<OwnedSemaphorePermit>,
    len: usize,
    /// The body's declared length (else [`INITIAL_BUFFER`]): no block reaches past it.
    expected: usize,
}

impl BodyBlocks {
    fn new(expected: usize) -> Self {
        BodyBlocks {
            blocks: Vec::new(),
            held: None,
            len: 0,
            expected,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`, taking a unit of the budget for each new block; `false` when the budget
    /// has no room left.
    fn push(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let full = self.blocks.last().is_none_or(|b| b.len() == b.capacity());
            if full {
                let Ok(permit) = BODY_BUDGET.clone().try_acquire_owned() else {
                    return false;
                };
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                // A full block, or what the declared length still brings if less (a body
                // without one, or past it, gets full blocks).
                let size = match self.expected.saturating_sub(self.len) {
                    0 => BUDGET_UNIT,
                    rest => rest.max(data.len()).min(BUDGET_UNIT),
                };
                self.blocks.push(Vec::with_capacity(size));
            }
            let Some(block) = self.blocks.last_mut() else {
                return false;
            };
            let take = (block.capacity() - block.len()).min(data.len());
            block.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.len += take;
        }
        true
    }

    /// The body in one buffer, with the budget its blocks held (the copy is made while they
    /// still hold it; the buffer then counts in their place).
    fn into_body(self) -> ReadBody {
        let mut bytes = Vec::with_capacity(self.len);
        for b in &self.blocks {
            bytes.extend_from_slice(b);
        }
        ReadBody {
            bytes,
            budget: self.held,
        }
    }
}

/// The longest a refused body is drained, however steadily it trickles: a drain is a courtesy
/// (so the answer is read rather than reset), never a way to hold a connection slot.
const DRAIN_TOTAL: Duration = Duration::from_secs(10);

/// The most a refused, over-long body is read (and dropped) so its 413 reaches the client.
const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;
/// How long that best-effort drain waits for the next piece: a client that is sending keeps
/// sending; one that waits for the answer first (`Expect: 100-continue`, or a raw client) gets
/// it after this pause instead of after the whole idle timeout.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Reads and drops what a client sends of a body the endpoint refuses without using it, up to
/// `limit` bytes and for at most [`DRAIN_TOTAL`], waiting at most [`DRAIN_IDLE`] (or `idle`, if
/// shorter) for each piece. Answering
/// and closing with unread bytes makes the kernel reset the connection, and the client may see
/// the reset instead of the answer.
pub(crate) async fn drain(body: Body, limit: u64, idle: Duration) {
    let _ = tokio::time::timeout(DRAIN_TOTAL, drain_paced(body, limit, idle)).await;
}

/// [`drain`] without its overall bound.
async fn drain_paced(mut body: Body, limit: u64, idle: Duration) {
    let pause = idle.min(DRAIN_IDLE);
    let mut seen = 0u64;
    while seen <= limit {
        match tokio::time::timeout(pause, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

/// Reads a request body with [`read_body`] (under the endpoint's idle timeout) and decodes it
/// as one protocol message of at most `limit` bytes, with the body's share of the budget (keep
/// it until the request is answered). The caller checks its `v`.
pub(crate) async fn read_message<T: DeserializeOwned>(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &'static str,
) -> Result<(T, BodyBudget), ApiError> {
    let body = read_body(headers, body, limit, Pace::of(st), what).await?;
    Ok((decode(&body.bytes, limit, what)?, body.budget))
}

/// Decodes a CBOR protocol message (already bounded by [`read_body`]).
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, ApiError> {
    protocol::decode(bytes, limit, what).map_err(|e| match e {
        apoyo_sync::Error::TooLarge { .. } => ApiError::too_large(e.to_string()),
        _ => ApiError::malformed(e.to_string()),
    })
}

/// Checks a message's `v`.
pub(crate) fn check_version(v: u8) -> Result<(), ApiError> {
    if v == protocol::VERSION {
        Ok(())
    } else {
        Err(ApiError::malformed(format!(
            "protocol version {v} is not supported (this endpoint speaks {})",
            protocol::VERSION
        )))
    }
}

/// A CBOR answer.
pub(crate) fn cbor(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(protocol::CBOR),
    );
    resp
}

/// Encodes a message as a CBOR answer.
pub(crate) fn cbor_msg<T: serde::Serialize>(status: u16, msg: &T) -> Result<Response, ApiError> {
    Ok(cbor(status, protocol::encode(msg)?))
}

/// A header's value as text, if present and visible ASCII.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = header_str(headers, header::AUTHORIZATION.as_str())?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Unix seconds of a time (times the endpoint compares are whole seconds).
pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// The time of unix second `s` (clamped to the representable range).
pub(crate) fn from_unix(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The last second of year 9999, the latest time an HTTP date can carry.
const LAST_HTTP_DATE: i64 = 253_402_300_799;

/// An RFC 7231 HTTP date (`Upload-Expires`), clamped to what the format can carry.
pub(crate) fn http_date(unix_secs: i64) -> String {
    let secs = unix_secs.clamp(0, LAST_HTTP_DATE) as u64;
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// RFC 3339 text of a time.
pub(crate) fn rfc3339(t: OffsetDateTime) -> Result<String, ApiError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(ApiError::internal)
}

/// `n` random bytes from the operating system's CSPRNG, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; n];
    apoyo_sync::wire::crypto::fill_random(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn a_read_body_keeps_its_share_of_the_budget_until_dropped() {
        let mut blocks = BodyBlocks::new(200 * 1024);
        for _ in 0..200 {
            assert!(blocks.push(&[7u8; 1024]));
        }
        let body = blocks.into_body();
        assert_eq!(body.bytes.len(), 200 * 1024);
        // 64 + 64 + 64 + 8 KiB: four blocks' units, still held by the body once read.
        let held = body.budget.as_ref().map(|p| p.num_permits());
        assert_eq!(held, Some(4));
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn far_future_http_dates_are_clamped_not_a_panic() {
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(http_date(i64::MIN), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
