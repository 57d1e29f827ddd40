//! The network policy: what link the app says the phone is on (Wi-Fi, cellular, metered, none),
//! whether syncing is allowed on it ("Wi-Fi only"), and the cellular byte allowance, enforced
//! by [`MeteredTransport`], a [`Transport`] decorator every engine request goes through.
//!
//! Bytes are counted as they go on the wire at the HTTP layer — the request line, headers and
//! body of every attempt (retries and re-uploads included) and the status line, headers and
//! body of every answer. TLS records and TCP/IP framing are not counted (a few percent; the app
//! leaves that margin). The allowance is **never overshot**: before a request is sent, its
//! size plus the largest answer it may bring back is reserved; the answer is read only up to
//! what remains, and what was not used is given back when the exchange ends. A request that
//! does not fit is not sent at all, and the run stops with [`Hold::CellularCapReached`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use super::control::{Hold, RunControl};
use crate::sync::transport::{Method, Request, Response, SendFuture, Transport, TransportError};

/// The kind of link the phone is on now, as the app's connectivity callback reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum NetworkKind {
    /// No usable network: nothing is sent.
    None = 0,
    /// An unmetered Wi-Fi (or Ethernet) link.
    Wifi = 1,
    /// A cellular link: counted against the cellular allowance.
    Cellular = 2,
    /// Any other metered link (a phone hotspot, a metered Wi-Fi): counted like cellular.
    Metered = 3,
}

impl NetworkKind {
    fn from_u8(v: u8) -> NetworkKind {
        match v {
            1 => NetworkKind::Wifi,
            2 => NetworkKind::Cellular,
            3 => NetworkKind::Metered,
            _ => NetworkKind::None,
        }
    }

    /// Whether bytes sent on this link count against the cellular allowance.
    pub fn is_metered(self) -> bool {
        matches!(self, NetworkKind::Cellular | NetworkKind::Metered)
    }
}

/// What the app allows the engine to do on which link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct NetworkPolicy {
    /// Send only over Wi-Fi; on cellular or metered links syncs wait.
    pub wifi_only: bool,
    /// The most bytes (both directions, see the module docs) the engine may move over
    /// cellular or metered links from the moment this policy is set. `None`: no limit.
    /// Setting a policy again starts a new allowance (e.g. each month, or each day).
    pub cellular_allowance_bytes: Option<u64>,
}

/// Room reserved for the headers the HTTP client adds itself (host, accept, content-length).
const CLIENT_HEADERS_ALLOWANCE: u64 = 256;
/// Room reserved for an answer's status line and headers before it is seen.
const ANSWER_HEAD_ALLOWANCE: u64 = 2048;

/// Counters of a metered link, for status screens and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetworkUsage {
    /// Bytes moved over cellular or metered links since the policy was last set.
    pub metered_bytes: u64,
    /// Bytes moved over any link since the engine was opened.
    pub total_bytes: u64,
}

#[derive(Debug, Default)]
struct Account {
    policy: NetworkPolicy,
    usage: NetworkUsage,
    /// Bytes reserved by the exchange in flight (metered links only).
    reserved: u64,
}

/// The shared network state: the link kind, the policy and the byte account.
#[derive(Debug)]
pub struct Meter {
    kind: AtomicU8,
    account: Mutex<Account>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            kind: AtomicU8::new(NetworkKind::Wifi as u8),
            account: Mutex::new(Account::default()),
        }
    }
}

/// What the meter decided about one request.
struct Ticket {
    metered: bool,
    reserved: u64,
    request_bytes: u64,
    answer_limit: usize,
}

impl Meter {
    pub fn kind(&self) -> NetworkKind {
        NetworkKind::from_u8(self.kind.load(Ordering::SeqCst))
    }

    pub fn set_kind(&self, kind: NetworkKind) {
        self.kind.store(kind as u8, Ordering::SeqCst);
    }

    fn account(&self) -> std::sync::MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self) -> NetworkPolicy {
        self.account().policy
    }

    /// Sets the policy and starts a new metered allowance.
    pub fn set_policy(&self, policy: NetworkPolicy) {
        let mut a = self.account();
        a.policy = policy;
        a.usage.metered_bytes = 0;
    }

    pub fn usage(&self) -> NetworkUsage {
        self.account().usage
    }

    /// Why nothing may be sent now, if so (checked before a run and before each exchange).
    /// Whether the link is metered and an allowance counts it.
    pub fn allowance_applies(&self) -> bool {
        self.kind().is_metered() && self.account().policy.cellular_allowance_bytes.is_some()
    }

    pub fn hold(&self) -> Option<Hold> {
        let kind = self.kind();
        let a = self.account();
        match kind {
            NetworkKind::None => Some(Hold::NoNetwork),
            NetworkKind::Wifi => None,
            _ if a.policy.wifi_only => Some(Hold::WifiOnly),
            _ => match a.policy.cellular_allowance_bytes {
                Some(cap) if a.usage.metered_bytes + a.reserved >= cap => {
                    Some(Hold::CellularCapReached)
                }
                _ => None,
            },
        }
    }

    /// Reserves room for `req` and its answer, or says why it may not be sent.
    fn admit(&self, req: &Request, limit: usize) -> Result<Ticket, Hold> {
        if let Some(h) = self.hold() {
            return Err(h);
        }
        let request_bytes = request_wire_bytes(req);
        let metered = self.kind().is_metered();
        let mut a = self.account();
        let cap = a.policy.cellular_allowance_bytes.filter(|_| metered);
        let Some(cap) = cap else {
            return Ok(Ticket {
                metered,
                reserved: 0,
                request_bytes,
                answer_limit: limit,
            });
        };
        let left = cap.saturating_sub(a.usage.metered_bytes + a.reserved);
        // The request, the answer's head and at least an empty body must fit.
        let fixed = request_bytes + ANSWER_HEAD_ALLOWANCE;
        if fixed > left {
            return Err(Hold::CellularCapReached);
        }
        let answer_limit = limit.min(usize::try_from(left - fixed).unwrap_or(usize::MAX));
        let reserved = fixed + answer_limit as u64;
        a.reserved += reserved;
        Ok(Ticket {
            metered,
            reserved,
            request_bytes,
            answer_limit,
        })
    }

    /// Ends an exchange: charges what it moved (all of the reservation when unknown).
    fn settle(&self, t: &Ticket, answer_bytes: Option<u64>) {
        let mut a = self.account();
        a.reserved = a.reserved.saturating_sub(t.reserved);
        let used = match answer_bytes {
            Some(n) => t.request_bytes + n,
            // No answer: the request may have gone out whole and part of an answer come
            // back; charge the whole reservation (or, unmetered, the request).
            None => t.reserved.max(t.request_bytes),
        };
        if t.metered {
            a.usage.metered_bytes += used;
        }
        a.usage.total_bytes += used;
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
    }
}

/// An upper bound of the request's HTTP/1.1 bytes: request line, headers, blank line, body.
fn request_wire_bytes(req: &Request) -> u64 {
    let line = method_name(req.method).len() + 1 + req.path.len() + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.len() + 2 + v.len() + 2)
        .sum();
    (line + headers + 2 + req.body.len()) as u64 + CLIENT_HEADERS_ALLOWANCE
}

/// The HTTP/1.1 bytes of an answer: status line, headers, blank line, body.
fn answer_wire_bytes(resp: &Response) -> u64 {
    let line = "HTTP/1.1 000 \r\n".len() + 32;
    let headers: usize = resp
        .headers
        .iter()
        .map(|(k, v)| k.len() + 2 + v.len() + 2)
        .sum();
    (line + headers + 2 + resp.body.len()) as u64
}

/// A [`Transport`] that sends only what the network policy allows, counts every byte, and
/// tells the run control why it held a request back.
pub struct MeteredTransport<T> {
    inner: T,
    meter: std::sync::Arc<Meter>,
    control: std::sync::Arc<dyn RunControl>,
}

impl<T: Transport> MeteredTransport<T> {
    pub fn new(
        inner: T,
        meter: std::sync::Arc<Meter>,
        control: std::sync::Arc<dyn RunControl>,
    ) -> Self {
        MeteredTransport {
            inner,
            meter,
            control,
        }
    }
}

impl<T: Transport> Transport for MeteredTransport<T> {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let ticket = match self.meter.admit(&req, limit) {
                Ok(t) => t,
                Err(h) => {
                    self.control.hold_for(h);
                    return Err(TransportError::Broken(format!("held: {}", h.describe())));
                }
            };
            let result = self.inner.send(req, ticket.answer_limit).await;
            let answer = result.as_ref().ok().map(answer_wire_bytes);
            self.meter.settle(&ticket, answer);
            result
        })
    }
}
