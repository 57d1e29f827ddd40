//! The accept loop: HTTP/1.1 connections with a header-read (and idle keep-alive) timeout and a
//! cap on open connections, so that idle or trickling clients cannot take the endpoint down.
//!
//! - hyper's header-read timer runs whenever a connection waits for a request head: from
//!   accept to the end of the first head, and again from the end of each answer to the end of
//!   the next head. A slowloris header trickle and an idle keep-alive connection are both
//!   closed after [`EndpointConfig::header_read_timeout`]. Bodies have their own bounds
//!   (`http::read_body`: a longest pause and a minimum rate), never a whole-request deadline.
//! - At most [`connection_cap`] connections are open at once. When the cap is reached the
//!   oldest connection is asked to close (at once when it is idle or still sending its head;
//!   after its answer when a request is in flight) before the next is accepted, so a flood of
//!   idle sockets never exhausts the file descriptors and the newest client is answered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinSet;

/// File descriptors kept out of the connection budget: the database and its WAL and shared
/// memory, the listener, the runtime's poller, standard streams, logging.
const RESERVED_FDS: u64 = 32;
/// Cap when the descriptor limit is unlimited or very high.
const MAX_CAP: u64 = 4096;
/// The most a connection's read buffer grows to (hyper's default is ≈ 400 KiB): a request head
/// is a few hundred bytes, and body bytes move on into the body buffer (`http::read_body`, under
/// its budget), so a fast sender cannot make each of `cap` connections hold 400 KiB.
const READ_BUFFER_MAX: usize = 64 * 1024;

/// How many connections may be open at once: the configured cap, else half of what the file
/// descriptor limit leaves after [`RESERVED_FDS`] (a connection may hold a socket and an
/// upload file at the same time).
pub(crate) fn connection_cap(configured: Option<usize>) -> usize {
    if let Some(n) = configured {
        return n.max(1);
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    (limit.saturating_sub(RESERVED_FDS) / 2).clamp(1, MAX_CAP) as usize
}

/// Open connections, oldest first: the close signal of each.
#[derive(Default)]
struct Open {
    next_id: u64,
    conns: VecDeque<(u64, Arc<Notify>)>,
}

type Registry = Arc<Mutex<Open>>;

fn register(reg: &Registry) -> (u64, Arc<Notify>) {
    let mut open = reg.lock().unwrap_or_else(|p| p.into_inner());
    let id = open.next_id;
    open.next_id += 1;
    let notify = Arc::new(Notify::new());
    open.conns.push_back((id, notify.clone()));
    (id, notify)
}

fn unregister(reg: &Registry, id: u64) {
    let mut open = reg.lock().unwrap_or_else(|p| p.into_inner());
    open.conns.retain(|(i, _)| *i != id);
}

/// Asks the oldest open connection to close (it leaves the registry at once, so the next call
/// picks the next one even while this one finishes an answer).
fn evict_oldest(reg: &Registry) {
    let oldest = reg
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .conns
        .pop_front();
    if let Some((_, notify)) = oldest {
        notify.notify_one();
    }
}

fn close_all(reg: &Registry) {
    let all: Vec<_> = reg
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .conns
        .drain(..)
        .collect();
    for (_, notify) in all {
        notify.notify_one();
    }
}

/// Serves `app` on `listener` until `stop` fires, then asks every connection to close and
/// waits for the answers in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    cap: usize,
    mut stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(cap));
    let reg: Registry = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                evict_oldest(&reg);
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut stop => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let (id, close) = register(&reg);
        // The peer address, for the registration budget (`routes::rate_limit::source`).
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let reg2 = reg.clone();
        tasks.spawn(async move {
            serve_connection(stream, app, header_read_timeout, close).await;
            unregister(&reg2, id);
            drop(permit);
        });
    }
    close_all(&reg);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One HTTP/1.1 connection, closed gracefully when `close` is notified.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    header_read_timeout: Duration,
    close: Arc<Notify>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(READ_BUFFER_MAX);
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = close.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
