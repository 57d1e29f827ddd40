//! The endpoint in-process: a [`Transport`] over the axum `Router` (no sockets), and a plain
//! request helper for targets that craft requests by hand.

use apoyo_sync::testkit::sync::transport::{
    Method, Request, Response, SendFuture, Transport, TransportError,
};
use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A transport whose "network" is a call into the endpoint's router.
#[derive(Clone)]
pub struct RouterTransport {
    pub router: Router,
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

/// An answer read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request through `router`. `None` when the request cannot be built (a header an
/// HTTP client could not send either). A body cut after `abort_after` bytes is delivered as a
/// stream that fails there, as a dropped link does.
pub async fn call(
    router: &Router,
    method: axum::http::Method,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    abort_after: Option<usize>,
) -> Option<Answer> {
    let mut b = axum::http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = match abort_after {
        None => Body::from(body),
        Some(n) => {
            let head = body[..n.min(body.len())].to_vec();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                vec![Ok(head), Err(std::io::Error::other("injected link drop"))];
            Body::from_stream(futures_util::stream::iter(chunks))
        }
    };
    let req = b.body(body).ok()?;
    let resp = router.clone().oneshot(req).await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
        .collect();
    let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
    Some(Answer {
        status,
        headers,
        body,
    })
}

impl Transport for RouterTransport {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let abort = req.abort_body_after;
            let exchange = call(
                &self.router,
                method(req.method),
                &req.path,
                &req.headers,
                req.body,
                abort,
            );
            let answer = match tokio::time::timeout(req.timeout, exchange).await {
                Err(_) => return Err(TransportError::Timeout),
                Ok(None) => return Err(TransportError::Broken("request not sendable".into())),
                Ok(Some(a)) => a,
            };
            if abort.is_some() {
                // The link dropped mid-body: whatever the endpoint answered never arrives.
                return Err(TransportError::Broken("injected link drop".into()));
            }
            if answer.body.len() > limit {
                return Err(TransportError::TooLarge(limit));
            }
            Ok(Response {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
            })
        })
    }
}
