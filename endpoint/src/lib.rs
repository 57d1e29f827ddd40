//! The reference INE endpoint for protocol v1 of apoyo-sync (axum + SQLite): registration and
//! activation, tus 1.0 uploads of part ciphertexts, idempotent commits answered with signed
//! receipts, and the duplicate rule of LGIPE art. 385.
//!
//! This file is the public API; each concern lives in its own module:
//! - `config`: [`EndpointConfig`], the [`Chaos`] hook;
//! - `state`: the shared state ([`AppState`]): database, blob folder, derived keys;
//! - `store`: the storage seam (ADR 0019), SQLite (`db`: pragmas and numbered migrations,
//!   `endpoint/schema/`) or PostgreSQL (`endpoint/schema/postgres/`) behind one trait;
//!   `blob_store`: the blob tier's seam over `blobs` (ciphertext in a folder);
//! - `routes`: the HTTP routes; `support`: deciding a commit; `digest`: idempotency;
//! - `auth`: bearer tokens; `stats`: what was decided; `keyring`: the seal and receipt keys,
//!   their certificates from the INE root, rotation.
#![deny(unsafe_code)]

mod auth;
mod blob_store;
mod blobs;
mod collector;
mod config;
mod db;
mod digest;
mod error;
mod http;
pub mod keyring;
mod registration_limits;
mod routes;
mod serve;
mod skew;
mod state;
mod stats;
mod store;
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    Chaos, DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_BODY_MIN_RATE, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_UPLOAD_TTL, EndpointConfig, Injected, MAX_UPLOAD_TTL, Route,
};
pub use config::{DEFAULT_COMMIT_REFUSAL_WINDOW, DEFAULT_COMMIT_REFUSALS};
pub use error::EndpointError;
pub use ipnet::IpNet;
pub use keyring::KeyRing;
pub use registration_limits::{
    DEFAULT_REGISTRATION_SWEEP_EVERY, DEFAULT_REGISTRATION_WINDOW, DEFAULT_REGISTRATIONS_GLOBAL,
    DEFAULT_REGISTRATIONS_PER_ADDRESS, DEFAULT_REGISTRATIONS_PER_IPV6_SITE,
    DEFAULT_REGISTRATIONS_PER_SOURCE, DEFAULT_UNACTIVATED_TTL, RegistrationLimits,
    TrustedForwarding,
};
pub use routes::router;
pub use state::AppState;
pub use stats::{ProcessStats, Stats};
pub use store::DatabaseUrl;

/// How long [`RunningEndpoint::shutdown`] waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An endpoint serving on a socket.
pub struct RunningEndpoint {
    /// The bound address (the real port when started on port 0).
    pub addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for RunningEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEndpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Opens the database and blob folder, binds `listen` and serves in the background. The
/// development routes (`dev`) hand out activation codes: refused on a non-loopback address.
pub async fn start(
    config: EndpointConfig,
    listen: SocketAddr,
) -> Result<RunningEndpoint, EndpointError> {
    if config.dev && !listen.ip().is_loopback() {
        return Err(EndpointError::Config(format!(
            "the development routes (--dev) hand out activation codes; they serve only on a loopback address, not {listen}"
        )));
    }
    let header_read_timeout = config.header_read_timeout;
    let cap = serve::connection_cap(config.max_connections);
    let state = AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(state.clone());
    // The periodic sweep of unactivated registrations lives as long as the server task, and
    // is gone (with its handle on the database) before the server task ends: a stopped
    // endpoint has closed its database.
    let (end_sweeps, sweeps_ended) = oneshot::channel::<()>();
    let sweeper = Sweeper {
        stop: Some(end_sweeps),
        task: Some(tokio::spawn(routes::sweep_unactivated_every(
            state.clone(),
            sweeps_ended,
        ))),
    };
    let serving = serve::serve(listener, app, header_read_timeout, cap, stopped);
    let task = tokio::spawn(async move {
        let mut sweeper = sweeper;
        let served = serving.await;
        sweeper.stop().await;
        served
    });
    tracing::info!(%addr, max_connections = cap, "endpoint listening");
    Ok(RunningEndpoint {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

impl RunningEndpoint {
    /// The base URL (`http://127.0.0.1:PORT`; loopback when bound to every interface).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The shared state (for [`router`] in in-process tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What the endpoint decided so far.
    pub async fn try_stats(&self) -> Result<Stats, EndpointError> {
        self.state
            .db(|conn, _| Ok(stats::query(conn)?))
            .await
            .map_err(|e| EndpointError::Internal(e.detail))
    }

    /// What the endpoint decided so far (as `/v1/admin/stats` serves it). A database failure is
    /// logged and gives empty stats; use [`RunningEndpoint::try_stats`] to see it.
    pub async fn stats(&self) -> Stats {
        match self.try_stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "stats unavailable");
                Stats::default()
            }
        }
    }

    /// Stops accepting connections, lets requests in flight finish (up to a few seconds), and
    /// returns when the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server stopped with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
                Err(_) => {
                    tracing::warn!(
                        "requests still in flight after the grace period; dropping them"
                    );
                    task.abort();
                }
            }
        }
    }
}

/// The periodic sweep's task: [`Sweeper::stop`] asks it to stop between sweeps and waits
/// until it is gone, with its handle on the database; dropped otherwise, it is aborted.
struct Sweeper {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    async fn stop(&mut self) {
        // Dropping the sender ends the task's wait for its next tick.
        self.stop.take();
        if let Some(task) = self.task.take() {
            // A panicked sweep is logged by tokio; the endpoint is stopping either way.
            let _ = task.await;
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Drop for RunningEndpoint {
    fn drop(&mut self) {
        // Dropped without `shutdown`: still stop serving.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// For the CLI: builds a runtime, starts the endpoint, calls `on_ready` with the bound address,
/// and serves until Ctrl-C.
pub fn serve_blocking(
    config: EndpointConfig,
    listen: SocketAddr,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), EndpointError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ep = start(config, listen).await?;
        on_ready(ep.addr);
        let signal = tokio::signal::ctrl_c().await;
        ep.shutdown().await;
        signal?;
        Ok(())
    })
}
