//! The simulated world's endpoint: the real reference endpoint (its axum router, its SQLite
//! file and blob folder in the world's folder), called in-process through tower's `oneshot`
//! (no sockets), restarted on the same database, and its chaos hook armed by the network to
//! answer one request 429/503 with or without `Retry-After`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_endpoint::{AppState, Chaos, EndpointConfig, Injected, KeyRing, Route};
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::{Clock, Process};
use axum::body::Body;
use tower::ServiceExt;

/// The chaos hook: answers the next request with the armed status, once.
#[derive(Default)]
pub struct ArmedChaos(Mutex<Option<Injected>>);

impl ArmedChaos {
    pub fn arm(&self, status: u16, retry_after_secs: Option<u32>) {
        *self.0.lock().expect("chaos lock") = Some(Injected::Status {
            status,
            retry_after_secs,
        });
    }
    pub fn disarm(&self) {
        *self.0.lock().expect("chaos lock") = None;
    }
}

impl Chaos for ArmedChaos {
    fn before(&self, _route: Route, _device: Option<&str>) -> Option<Injected> {
        self.0.lock().expect("chaos lock").take()
    }
}

/// The endpoint and what restarting it needs.
pub struct SimEndpoint {
    dir: PathBuf,
    /// The v1.1 key ring (seal and receipt keys certified by a fresh INE root).
    ring: KeyRing,
    processes: Vec<Process>,
    clock: ManualClock,
    upload_ttl: Duration,
    pub chaos: Arc<ArmedChaos>,
    router: Option<axum::Router>,
    pub restarts: u32,
}

impl SimEndpoint {
    pub fn start(
        dir: &Path,
        processes: Vec<Process>,
        clock: ManualClock,
        upload_ttl: Duration,
    ) -> SimEndpoint {
        let root = Ed25519Secret::generate().expect("INE root");
        let ring = KeyRing::generate(&root, clock.now()).expect("key ring");
        let mut ep = SimEndpoint {
            dir: dir.to_path_buf(),
            ring,
            processes,
            clock,
            upload_ttl,
            chaos: Arc::new(ArmedChaos::default()),
            router: None,
            restarts: 0,
        };
        ep.boot();
        ep
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("endpoint.db")
    }

    /// What a device of this endpoint is provisioned with: the seal key and the INE root.
    pub fn provisioning(&self) -> InePublicKeys {
        let seal = EndpointSecretKey::from_bytes(*self.ring.seal[0].secret.as_bytes());
        InePublicKeys {
            seal_key: seal.public(),
            ine_root: self.ring.root,
        }
    }

    fn boot(&mut self) {
        let mut cfg =
            EndpointConfig::new(self.db_path(), self.ring.clone(), self.processes.clone());
        cfg.dev = true;
        cfg.clock = Arc::new(self.clock.clone());
        cfg.upload_ttl = self.upload_ttl;
        let chaos: Arc<dyn Chaos> = self.chaos.clone();
        cfg.chaos = Some(chaos);
        let state = AppState::open(cfg).expect("endpoint state");
        self.router = Some(apoyo_endpoint::router(state));
    }

    /// The endpoint process dies between two requests and starts again on the same database
    /// and blob folder (what it kept in memory is gone; its chaos hook is not armed).
    pub fn restart(&mut self) {
        self.router = None;
        self.chaos.disarm();
        self.boot();
        self.restarts += 1;
    }

    pub fn router(&self) -> axum::Router {
        self.router.clone().expect("endpoint running")
    }
}

/// Calls the router with one request; the answer's status, headers and body (at most
/// `limit` bytes, else `None` for the body).
pub async fn call(
    router: axum::Router,
    req: axum::http::Request<Body>,
    limit: usize,
) -> (u16, Vec<(String, String)>, Option<Vec<u8>>) {
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
        .collect();
    let body = axum::body::to_bytes(resp.into_body(), limit)
        .await
        .ok()
        .map(|b| b.to_vec());
    (status, headers, body)
}
