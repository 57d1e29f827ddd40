//! The fault-injecting TCP proxy (`apoyo proxy`): listens, connects each accepted connection to
//! the upstream endpoint, and injects the profile's faults on the way. It is TLS-agnostic: it
//! never reads payload for meaning nor alters it (a pinned HTTPS session passes untouched),
//! except in plain-HTTP mode, where it may answer 429/503 itself instead of forwarding.

mod conn;
pub mod link;
pub mod log;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

pub use link::Link;
pub use log::{ConnRecord, Dir, FaultEvent, FaultLog, Summary};

use crate::profile::Profile;
use crate::schedule::FlapSchedule;

/// How many up/down periods of a flapping link are planned (far beyond any run).
const FLAP_PERIODS: usize = 10_000;

/// What one proxy listener does.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub profile: Profile,
    pub seed: u64,
    /// Plain-HTTP mode: enables the proxy's own 429/503 answers.
    pub http_mode: bool,
    /// The link's number (its own fault schedule; a device's link in `fieldtest`).
    pub link: u64,
}

pub(crate) struct Shared {
    pub(crate) upstream: SocketAddr,
    pub(crate) profile: Profile,
    pub(crate) seed: u64,
    pub(crate) http_mode: bool,
    pub(crate) log: Arc<FaultLog>,
}

/// A proxy serving in the background.
pub struct RunningProxy {
    /// The bound address (the real port when started on port 0).
    pub addr: SocketAddr,
    pub link: Arc<Link>,
    pub log: Arc<FaultLog>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds `cfg.listen` and proxies to `cfg.upstream` until stopped; faults are written to `log`.
pub async fn start(cfg: ProxyConfig, log: Arc<FaultLog>) -> std::io::Result<RunningProxy> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let link = Arc::new(Link::new(
        cfg.link,
        cfg.profile.up_kbps,
        cfg.profile.down_kbps,
    ));
    let shared = Arc::new(Shared {
        upstream: cfg.upstream,
        profile: cfg.profile.clone(),
        seed: cfg.seed,
        http_mode: cfg.http_mode,
        log: log.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let flap = FlapSchedule::new(cfg.seed, &cfg.profile, cfg.link, FLAP_PERIODS);
    let task = tokio::spawn(serve(listener, shared, link.clone(), flap, stopped));
    Ok(RunningProxy {
        addr,
        link,
        log,
        stop,
        task: Some(task),
    })
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    link: Arc<Link>,
    flap: Option<FlapSchedule>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    if let Some(f) = flap {
        conns.spawn(flapper(f, link.clone(), shared.clone()));
    }
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
                let n = link.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                conns.spawn(conn::handle(stream, shared.clone(), link.clone(), n));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Takes the link down and up on its schedule.
async fn flapper(f: FlapSchedule, link: Arc<Link>, shared: Arc<Shared>) {
    let start = Instant::now();
    for (down_at, up_at) in f.down_periods() {
        sleep_until(start + down_at).await;
        link.set_down(true);
        shared.log.fault(
            link.index,
            u64::MAX,
            "link_down",
            format!("for_ms={}", (up_at - down_at).as_millis()),
        );
        sleep_until(start + up_at).await;
        link.set_down(false);
        shared
            .log
            .fault(link.index, u64::MAX, "link_up", String::new());
    }
}

impl RunningProxy {
    /// Stops accepting, cuts the connections in flight, and returns when stopped.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
