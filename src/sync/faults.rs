//! A fault-injecting transport decorator: drops requests before they leave, loses responses
//! after the endpoint acted on them, and cuts uploads midway — from a seed, so a failing run
//! can be replayed. Used by `apoyo demo`, the tests and (later) the field-test tools.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::transport::{Method, Request, SendFuture, Transport, TransportError};

/// Probabilities (0.0-1.0) of each fault, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    /// The request never reaches the endpoint (no coverage, connection refused).
    pub drop_request: f64,
    /// The endpoint acted on the request but the answer is lost (the link dropped on the way
    /// back): the dangerous case for exactly-once.
    pub lose_response: f64,
    /// A PATCH body is cut at a random point (the link dropped mid-upload).
    pub cut_upload: f64,
}

impl FaultPlan {
    /// A link that fails about one request in four, in every way.
    pub fn lossy() -> Self {
        FaultPlan {
            drop_request: 0.1,
            lose_response: 0.1,
            cut_upload: 0.1,
        }
    }
}

/// Counters of what went through and what was injected.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub requests: AtomicU64,
    pub dropped: AtomicU64,
    pub lost_responses: AtomicU64,
    pub cut_uploads: AtomicU64,
    /// Request body bytes handed to the inner transport (cut bodies count what was sent).
    pub body_bytes_sent: AtomicU64,
}

/// Wraps a transport and injects faults according to a [`FaultPlan`].
pub struct FaultyTransport<T> {
    inner: T,
    plan: FaultPlan,
    rng: Mutex<fastrand::Rng>,
    pub stats: FaultStats,
}

impl<T: Transport> FaultyTransport<T> {
    pub fn new(inner: T, plan: FaultPlan, seed: u64) -> Self {
        FaultyTransport {
            inner,
            plan,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            stats: FaultStats::default(),
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64() < p
    }

    fn pick(&self, below: usize) -> usize {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .usize(..below.max(1))
    }
}

impl<T: Transport> Transport for FaultyTransport<T> {
    fn send(&self, mut req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if self.roll(self.plan.drop_request) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(TransportError::Connect);
            }
            if req.method == Method::Patch && req.body.len() > 1 && self.roll(self.plan.cut_upload)
            {
                let at = 1 + self.pick(req.body.len() - 1);
                req.abort_body_after = Some(at);
                self.stats.cut_uploads.fetch_add(1, Ordering::Relaxed);
            }
            let sent = req
                .abort_body_after
                .unwrap_or(req.body.len())
                .min(req.body.len());
            self.stats
                .body_bytes_sent
                .fetch_add(sent as u64, Ordering::Relaxed);
            let lose = self.roll(self.plan.lose_response);
            let resp = self.inner.send(req, limit).await;
            if lose && resp.is_ok() {
                self.stats.lost_responses.fetch_add(1, Ordering::Relaxed);
                return Err(TransportError::Broken("injected: response lost".into()));
            }
            resp
        })
    }
}
