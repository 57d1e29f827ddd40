//! The reference endpoint for the sync suites: real HTTP on loopback, its SQLite and blob
//! folder in a folder made once as a template (with one device registered and activated) and
//! copied afresh for each run, restarted on the same port so the device's saved upload URLs
//! stay valid; and the run control that stops a device's sync once the power is out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apoyo_endpoint::{EndpointConfig, KeyRing, RunningEndpoint};
use apoyo_powerloss::Disk;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::control::Changed;
use apoyo_sync::testkit::sync::transport::{Method, Request};
use apoyo_sync::testkit::sync::{
    CaptureChange, Hold, HttpTransport, RunControl, SyncOptions, SyncReport, TlsConfig, Transport,
};
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::{Process, Provider};

use crate::device::{Device, PROCESSES};
use crate::support::{copy_dir, integrity, jpeg, temp_root};

pub struct Endpoint {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    ring: KeyRing,
    pub rt: tokio::runtime::Runtime,
    running: Option<RunningEndpoint>,
    port: u16,
}

impl Endpoint {
    /// A fresh endpoint on an ephemeral port, its folder the run folder.
    pub fn new() -> Endpoint {
        let (tmp, root) = temp_root();
        let ine = Ed25519Secret::generate().expect("INE root");
        let ring = KeyRing::generate(&ine, time::OffsetDateTime::now_utc()).expect("key ring");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut ep = Endpoint {
            _tmp: tmp,
            root,
            ring,
            rt,
            running: None,
            port: 0,
        };
        ep.start();
        ep
    }

    pub fn provisioning(&self) -> InePublicKeys {
        InePublicKeys {
            seal_key: EndpointSecretKey::from_bytes(*self.ring.seal[0].secret.as_bytes()).public(),
            ine_root: self.ring.root,
        }
    }

    /// The folder its database and blobs are in (whose power the endpoint suite cuts).
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn db(&self) -> PathBuf {
        self.run().join("endpoint.db")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts on the run folder (on the same port as before, once it has one).
    pub fn start(&mut self) {
        let cfg = || {
            let mut cfg = EndpointConfig::new(
                self.db(),
                self.ring.clone(),
                Process::parse_json_list(PROCESSES.as_bytes()).expect("processes"),
            );
            cfg.dev = true;
            cfg
        };
        let addr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let mut tries = 0;
        let running = loop {
            match self.rt.block_on(apoyo_endpoint::start(cfg(), addr)) {
                Ok(r) => break r,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("endpoint restart on port {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("the endpoint does not start: {e}"),
            }
        };
        self.port = running.addr.port();
        self.running = Some(running);
    }

    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }

    pub fn template(&self) -> PathBuf {
        self.root.join("template")
    }

    /// Stops, and resets the run folder to the template.
    pub fn fresh_run(&mut self) {
        self.stop();
        copy_dir(&self.template(), &self.run());
    }

    pub fn keep_run_as_template(&mut self) {
        self.stop();
        copy_dir(&self.run(), &self.template());
    }

    pub fn transport(&self) -> HttpTransport {
        HttpTransport::new(&self.url(), &TlsConfig::default()).expect("transport")
    }

    /// How the endpoint decided each of `ids` (`None`: it never saw it), from its database.
    pub fn results(&self, ids: &[String]) -> Vec<Option<String>> {
        let conn = rusqlite::Connection::open_with_flags(
            self.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("endpoint db");
        ids.iter()
            .map(|id| {
                conn.query_row(
                    "SELECT result FROM supports WHERE capture_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .ok()
            })
            .collect()
    }

    pub fn integrity(&self) -> String {
        integrity(&self.db())
    }

    /// Registers and activates the device in `device`'s run folder.
    pub fn enroll(&self, device: &Device) {
        let mut store = device.open().expect("open the device");
        let t = self.transport();
        let email = "powerloss@example.org";
        apoyo_sync::testkit::sync::register_blocking(
            &mut store,
            &t,
            &self.url(),
            email,
            Provider::Google,
            &jpeg(3000),
        )
        .expect("register");
        let mailbox = self
            .rt
            .block_on(t.send(
                Request::new(
                    Method::Get,
                    format!("/v1/dev/mailbox/{email}"),
                    Duration::from_secs(10),
                ),
                1 << 20,
            ))
            .expect("mailbox");
        let mailbox: serde_json::Value = serde_json::from_slice(&mailbox.body).expect("json");
        let code = mailbox["code"].as_str().expect("code");
        apoyo_sync::testkit::sync::activate_blocking(&mut store, &t, code).expect("activate");
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a sync run once the power of `disk` is out (the device, or the endpoint it talks
/// to, is dead: nothing more happens until the restart).
pub struct StopOnPowerLoss(pub Arc<Disk>);

impl RunControl for StopOnPowerLoss {
    fn hold(&self) -> Option<Hold> {
        self.0.crashed().then_some(Hold::Cancelled)
    }
    fn hold_for(&self, _hold: Hold) {}
    fn changed(&self) -> Changed<'_> {
        Box::pin(std::future::pending())
    }
    fn capture_changed(&self, _change: &CaptureChange) {}
    /// One exchange at a time: with a capture's parts in flight at once (ADR 0022) the order
    /// of their answers, and so the PATCH sizes the shared sizing hands out, varies from run to
    /// run, and a run could pass fewer sync points than its dry run. Each record's durability
    /// is the same either way; the overlap itself is covered by `tests/concurrent_sync.rs` and
    /// the simulation.
    fn one_at_a_time(&self) -> bool {
        true
    }
}

/// One sync run of `store` against `ep`, stopped when `disk`'s power goes out.
pub fn sync(
    store: &mut Store,
    ep: &Endpoint,
    disk: Option<Arc<Disk>>,
) -> apoyo_sync::Result<SyncReport> {
    let opts = SyncOptions {
        budget: Duration::from_secs(60),
        seed: Some(7),
        control: disk.map(|d| Arc::new(StopOnPowerLoss(d)) as Arc<dyn RunControl>),
        ..SyncOptions::default()
    };
    apoyo_sync::testkit::sync::sync_blocking(store, &ep.transport(), opts)
}
