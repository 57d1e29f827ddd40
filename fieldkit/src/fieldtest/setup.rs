//! Before the field run: the endpoint (in-process with a fresh database, or an external one),
//! the proxy's links, and each device's store, created, registered and activated directly
//! with the endpoint (through the development mailbox), with its plan written beside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apoyo_endpoint::{EndpointConfig, RunningEndpoint};
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::transport::{Method, Request};
use apoyo_sync::testkit::sync::{self, HttpTransport, TlsConfig, Transport};
use apoyo_sync::wire::Provider;
use apoyo_sync::{Collector, EndpointPublicKey, FileKeyGuard, IneRoot, Process};

use super::device::{KEYRING, PLAN, STORE};
use super::plan::{self, DevicePlan};
use super::{FieldConfig, FieldError};
use crate::proxy::{self, FaultLog, ProxyConfig, RunningProxy};

/// The endpoint side of a run.
pub struct Endpoint {
    /// Set when the endpoint runs in-process.
    pub running: Option<RunningEndpoint>,
    pub url: String,
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub public: EndpointPublicKey,
    /// The INE root the devices are provisioned with (protocol v1.1).
    pub ine_root: Option<IneRoot>,
}

/// Starts the in-process endpoint, or checks the external one's address.
pub async fn endpoint(cfg: &FieldConfig) -> Result<Endpoint, FieldError> {
    if let Some(ext) = &cfg.endpoint {
        let hostport = ext
            .url
            .strip_prefix("http://")
            .ok_or_else(|| FieldError::Setup("--endpoint must be http://host:port".into()))?
            .trim_end_matches('/');
        let addr = tokio::net::lookup_host(hostport)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| FieldError::Setup("--endpoint: host:port not resolved".into()))?;
        return Ok(Endpoint {
            running: None,
            url: ext.url.trim_end_matches('/').to_string(),
            addr,
            db: ext.db.clone(),
            public: ext.public,
            ine_root: ext.ine_root,
        });
    }
    let root = apoyo_sync::testkit::crypto::Ed25519Secret::generate()?;
    let ring = apoyo_endpoint::KeyRing::generate(&root, time::OffsetDateTime::now_utc())
        .map_err(|e| FieldError::io("key ring", e))?;
    let public = ring.seal[0].secret.public();
    let ine_root = Some(ring.root);
    let db = cfg.work_dir.join("endpoint.db");
    let mut ec = EndpointConfig::new(
        db.clone(),
        ring,
        Process::parse_json_list(plan::PROCESSES_JSON)?,
    );
    ec.dev = true;
    let ep = apoyo_endpoint::start(ec, ([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| FieldError::io("endpoint", e))?;
    Ok(Endpoint {
        url: ep.url(),
        addr: ep.addr,
        running: Some(ep),
        db,
        public,
        ine_root,
    })
}

/// One proxy listener per link, all writing to one fault log.
pub async fn links(
    cfg: &FieldConfig,
    upstream: SocketAddr,
    log: Arc<FaultLog>,
) -> Result<Vec<RunningProxy>, FieldError> {
    let n = if cfg.shared_link { 1 } else { cfg.devices };
    let mut out = Vec::with_capacity(n);
    for link in 0..n as u64 {
        let pc = ProxyConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            upstream,
            profile: cfg.profile.clone(),
            seed: cfg.seed,
            http_mode: cfg.http_mode,
            link,
        };
        out.push(
            proxy::start(pc, log.clone())
                .await
                .map_err(|e| FieldError::io("proxy", e))?,
        );
    }
    Ok(out)
}

/// A device ready to capture and sync.
#[derive(Debug, Clone)]
pub struct Device {
    pub index: usize,
    pub dir: PathBuf,
    pub device_id: String,
    pub plan: DevicePlan,
    /// The link this device syncs through.
    pub link: usize,
}

/// Creates, registers and activates every device (directly with the endpoint: the link under
/// test carries the supports), and writes each plan beside its store.
pub fn devices(
    cfg: &FieldConfig,
    ep: &Endpoint,
    rt: &tokio::runtime::Runtime,
) -> Result<Vec<Device>, FieldError> {
    let direct = HttpTransport::new(&ep.url, &TlsConfig::default())?;
    let plans = plan::plans(cfg.devices, cfg.captures, cfg.seed, cfg.capture_bytes);
    let run_tag = crate::schedule::mix(cfg.seed ^ fastrand::u64(..)) % 1_000_000_000;
    let mut out = Vec::with_capacity(plans.len());
    for p in plans {
        let i = p.device;
        let dir = cfg.work_dir.join(format!("device-{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| FieldError::io("device folder", e))?;
        // A new device starts a new timeline (its marks are appended by each sync run).
        match std::fs::remove_file(dir.join(super::marks::MARKS)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(FieldError::io("marks", e));
            }
            _ => {}
        }
        let guard = FileKeyGuard::open_or_create(&dir.join(KEYRING))?;
        let collector = (i % 2 == 0).then(|| Collector::Auxiliar(format!("AUX-{i:04}")));
        let opts = StoreOptions {
            disk_reserve_bytes: 0,
            ..Default::default()
        };
        let mut store = match ep.ine_root {
            Some(ine_root) => Store::init(
                &dir.join(STORE),
                &guard,
                &InePublicKeys {
                    seal_key: ep.public,
                    ine_root,
                },
                collector,
                opts,
            )?,
            None => Store::init_unanchored(&dir.join(STORE), &guard, ep.public, collector, opts)?,
        };
        enrol(&mut store, &direct, &ep.url, &format!("{i}-{run_tag}"), rt)?;
        let json = serde_json::to_vec_pretty(&p).map_err(|e| FieldError::io("plan", e))?;
        std::fs::write(dir.join(PLAN), json).map_err(|e| FieldError::io("plan", e))?;
        out.push(Device {
            index: i,
            device_id: store.device_id().to_string(),
            dir,
            plan: p,
            link: if cfg.shared_link { 0 } else { i },
        });
    }
    Ok(out)
}

/// How many times setup registers and activates a device before giving up. The endpoint
/// mails at most five codes per device key an hour.
const ENROL_ATTEMPTS: u32 = 4;

/// Registers and activates one device, again from registration when an exchange fails in
/// transit: a netns run drops packets on the whole loopback, setup traffic included.
fn enrol(
    store: &mut Store,
    direct: &HttpTransport,
    url: &str,
    tag: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<(), FieldError> {
    let front = plan::front_image();
    let mut attempt = 1;
    loop {
        let email = format!("device-{tag}-{attempt}@fieldtest.invalid");
        let result = sync::register_blocking(store, direct, url, &email, Provider::Google, &front)
            .map_err(FieldError::from)
            .and_then(|_| mailbox(direct, &email, rt))
            .and_then(|code| Ok(sync::activate_blocking(store, direct, &code)?));
        match result {
            Err(e) if attempt < ENROL_ATTEMPTS && in_transit(&e) => {
                eprintln!(
                    "fieldtest: device setup attempt {attempt} failed in transit ({e}); starting again"
                );
                attempt += 1;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Whether a setup failure is the link's (worth starting again), not the endpoint's answer.
fn in_transit(e: &FieldError) -> bool {
    matches!(
        e,
        FieldError::Io { .. } | FieldError::Engine(apoyo_sync::Error::Transient(_))
    )
}

/// The activation code the development mailbox holds for `email`.
fn mailbox(
    t: &HttpTransport,
    email: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<String, FieldError> {
    let req = Request::new(
        Method::Get,
        format!("/v1/dev/mailbox/{email}"),
        Duration::from_secs(10),
    );
    let resp = rt
        .block_on(t.send(req, 1 << 16))
        .map_err(|e| FieldError::io("development mailbox", e))?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|_| {
        FieldError::Setup("the endpoint has no development mailbox (run it with --dev)".into())
    })?;
    v["code"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| FieldError::Setup("no code in the development mailbox".into()))
}
