//! The simulated network between the devices and the endpoint: a `Transport` that, on every
//! request, draws from the world's seeded generator what happens to it — delivered after a
//! latency, dropped before or after the endpoint saw it, delivered twice, held back and
//! delivered later (out of order), cut midway through its body (a reset), answered 429/503
//! by the endpoint's chaos hook with or without `Retry-After`, the endpoint restarted just
//! before it, or the device crashing while it is in flight. Time passes only on the world's
//! virtual clock.

use apoyo_sync::testkit::sync::Transport;
use apoyo_sync::testkit::sync::transport::{Method, Request, Response, SendFuture, TransportError};
use axum::body::Body;
use std::sync::Arc;

use super::endpoint::call;
use super::world::Shared;

/// What the network does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    /// Lost before the endpoint saw it; the device waits out its timeout.
    DropRequest,
    /// The endpoint handled it; the answer is lost (a reset).
    DropAnswer,
    /// Delivered twice; the device reads the second answer.
    Duplicate,
    /// Held back and delivered later, after newer requests; the device times out.
    Late,
    /// The body is cut after this many bytes (a reset midway).
    CutBody(usize),
    /// The endpoint's chaos hook answers this status, with `Retry-After` seconds or not.
    Status(u16, Option<u32>),
    /// The endpoint restarts (its database survives) just before the request.
    RestartEndpoint,
    /// The latency passes the request's timeout; the endpoint still handles it.
    SlowAnswer,
    /// The device dies with the request in flight, before or after the endpoint saw it.
    CrashBefore,
    CrashAfter,
}

/// A device's link to the endpoint.
pub struct SimNet {
    pub shared: Arc<Shared>,
    pub device: usize,
}

fn method(m: Method) -> axum::http::Method {
    match m {
        Method::Get => axum::http::Method::GET,
        Method::Post => axum::http::Method::POST,
        Method::Put => axum::http::Method::PUT,
        Method::Patch => axum::http::Method::PATCH,
        Method::Head => axum::http::Method::HEAD,
        Method::Delete => axum::http::Method::DELETE,
        Method::Options => axum::http::Method::OPTIONS,
    }
}

/// The HTTP request the endpoint receives; `cut` keeps only that many body bytes, then fails
/// the body (a connection reset midway).
pub fn http_request(req: &Request, cut: Option<usize>) -> axum::http::Request<Body> {
    let mut b = axum::http::Request::builder()
        .method(method(req.method))
        .uri(req.path.as_str());
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let states_length = matches!(req.method, Method::Post | Method::Put | Method::Patch);
    if states_length || !req.body.is_empty() {
        b = b.header("content-length", req.body.len().to_string());
    }
    let body = match cut {
        None => Body::from(req.body.clone()),
        Some(n) => {
            let head = bytes::Bytes::from(req.body[..n.min(req.body.len())].to_vec());
            let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(head),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated reset",
                )),
            ];
            Body::from_stream(futures_util::stream::iter(pieces))
        }
    };
    b.body(body).expect("a well-formed request")
}

/// The endpoint's runtime: its blocking threads finish at times no seed decides.
fn endpoint_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the endpoint's runtime")
    })
}

/// Hands a request to the endpoint and waits for its answer without yielding to the device's
/// other requests: the device's task sees every exchange finish where it started.
async fn call_now(
    router: axum::Router,
    req: axum::http::Request<Body>,
    limit: usize,
) -> (u16, Vec<(String, String)>, Option<Vec<u8>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    endpoint_runtime().spawn(async move {
        let _ = tx.send(call(router, req, limit).await);
    });
    rx.recv().expect("the endpoint answers")
}

impl SimNet {
    /// Hands one request to the endpoint and reads its answer.
    async fn deliver(&self, req: &Request, limit: usize) -> Result<Response, TransportError> {
        let router = self.shared.router();
        let (status, headers, body) = call_now(router, http_request(req, None), limit).await;
        let body = body.ok_or(TransportError::TooLarge(limit))?;
        self.shared
            .note(format!("    <- {status} ({} bytes)", body.len()));
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Delivers the requests held back so far (their answers go nowhere).
    async fn deliver_late(&self) {
        for req in self.shared.take_late() {
            let router = self.shared.router();
            let (status, _, _) = call_now(router, http_request(&req, None), 1 << 20).await;
            self.shared.note(format!(
                "  late {} {} delivered <- {status}",
                req.method_name(),
                self.shared.route_name(&req)
            ));
        }
    }

    async fn crash(&self) -> Result<Response, TransportError> {
        self.shared.crash_now();
        std::future::pending().await
    }

    async fn exchange(&self, req: Request, limit: usize) -> Result<Response, TransportError> {
        let (fate, latency, late_first) = self.shared.draw_fate(self.device, &req);
        if late_first {
            self.deliver_late().await;
        }
        let timeout = req.timeout;
        self.shared.advance(latency.min(timeout));
        match fate {
            Fate::Deliver => self.deliver(&req, limit).await,
            Fate::DropRequest => {
                self.shared.advance(timeout.saturating_sub(latency));
                Err(TransportError::Timeout)
            }
            Fate::DropAnswer => {
                self.deliver(&req, limit).await?;
                Err(TransportError::Broken("simulated reset".into()))
            }
            Fate::Duplicate => {
                let _first = self.deliver(&req, limit).await;
                self.deliver(&req, limit).await
            }
            Fate::Late => {
                self.shared.hold_late(req);
                self.shared.advance(timeout.saturating_sub(latency));
                Err(TransportError::Timeout)
            }
            Fate::CutBody(n) => {
                let router = self.shared.router();
                let (status, _, _) = call_now(router, http_request(&req, Some(n)), limit).await;
                self.shared.note(format!("    cut at {n} <- {status}"));
                Err(TransportError::Broken("simulated reset".into()))
            }
            Fate::Status(status, retry_after) => {
                self.shared.arm(status, retry_after);
                self.deliver(&req, limit).await
            }
            Fate::RestartEndpoint => {
                self.shared.restart_endpoint();
                self.deliver(&req, limit).await
            }
            Fate::SlowAnswer => {
                self.deliver(&req, limit).await?;
                Err(TransportError::Timeout)
            }
            Fate::CrashBefore => self.crash().await,
            Fate::CrashAfter => {
                let _ = self.deliver(&req, limit).await;
                self.crash().await
            }
        }
    }
}

impl Transport for SimNet {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            // A run keeps several requests in flight (ADR 0022). Each one yields once, so the
            // device's requests interleave at every exchange, in the device's own order; the
            // endpoint then answers it at once (`call_now`), so no thread decides an order.
            tokio::task::yield_now().await;
            self.exchange(req, limit).await
        })
    }
}

/// Names for the trace.
pub trait Named {
    fn method_name(&self) -> &'static str;
}

impl Named for Request {
    fn method_name(&self) -> &'static str {
        match self.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// The fate's short name for the trace.
pub fn fate_name(f: Fate) -> String {
    match f {
        Fate::CutBody(n) => format!("cut@{n}"),
        Fate::Status(s, Some(r)) => format!("{s} retry-after {r}s"),
        Fate::Status(s, None) => format!("{s}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
