//! The app-facing engine: one [`Engine`] owning the store, the transport to the endpoint, the
//! network policy and the sync options, with what an app does — open (with a key guard),
//! register, activate, processes, capture, status, list captures and receipts, retry a
//! quarantined capture, sync within a time budget, events, cancel, close.
//!
//! `Engine` is `Send + Sync`: the bridges call `sync` on a worker thread while the UI thread
//! captures, reads the status, changes the network policy or cancels. A running sync yields
//! the store to any other call at its next exchange boundary and then resumes, so a capture
//! never waits for a whole sync run.
//!
//! - [`config`]: [`Provisioning`] (what INE ships in the app) and [`EngineOptions`].
//! - [`network`]: [`NetworkKind`], [`NetworkPolicy`] and the byte meter.
//! - [`events`]: [`Event`], [`Wait`] and the app's [`Listener`].
//! - [`control`]: how a run is told to stop (cancel, policy, a waiting call).
//! - `run`: the sync loop.

pub mod config;
pub mod control;
pub mod events;
pub mod network;
mod run;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use time::OffsetDateTime;

pub use config::{EngineOptions, Provisioning};
pub use control::{CaptureChange, Hold};
pub use events::{Event, Listener, Wait};
pub use network::{NetworkKind, NetworkPolicy, NetworkUsage};

use control::Control;
use network::{Meter, MeteredTransport};

use crate::crypto::KeyGuard;
use crate::error::{Error, Result};
use crate::model::{CaptureId, NewCapture};
use crate::process::Process;
use crate::protocol::Provider;
use crate::queue::State;
use crate::store::{
    CaptureInfo, InePublicKeys, OpenReport, ReceiptInfo, Status, Store, StoreOptions,
};
use crate::sync::{self, HttpTransport, TlsConfig, Transport};

/// The answer to [`Engine::register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Registered {
    /// The emailed activation code is valid until then.
    #[serde(with = "time::serde::rfc3339")]
    pub code_expires_at: OffsetDateTime,
}

/// The answer to [`Engine::activate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Activated {
    /// The activation is valid until then; activate again after it.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Processes the endpoint lists as open.
    pub processes: usize,
}

/// What a status screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EngineStatus {
    /// Captures per state and bytes held on the device. While a sync runs, as of its last
    /// capture.
    pub queue: Status,
    pub syncing: bool,
    pub registered: bool,
    /// `None`: not activated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_until: Option<OffsetDateTime>,
    pub network: NetworkKind,
    pub policy: NetworkPolicy,
    pub usage: NetworkUsage,
}

/// The sync engine as an app uses it.
pub struct Engine {
    store: Mutex<Option<Store>>,
    closed: AtomicBool,
    syncing: AtomicBool,
    /// Serializes the start and end of a run with `cancel`, so a cancel reaches the run that
    /// was running when it was called, never a later one. Holds the running sync's thread.
    run_gate: Mutex<Option<ThreadId>>,
    /// Signalled when a run ends, for `close` to wait on.
    run_ended: Condvar,
    /// Facts about the store that status reads without waiting for a running sync.
    facts: Mutex<Facts>,
    provisioning: Provisioning,
    opts: EngineOptions,
    meter: Arc<Meter>,
    control: Arc<Control>,
    listener: Mutex<Option<Arc<dyn Listener>>>,
    /// The transport for the stored endpoint URL, built once.
    transport: Mutex<Option<(String, Arc<dyn Transport>)>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    queue: Status,
    registered: bool,
    activated_until: Option<OffsetDateTime>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a caller (caught at the bridge) leaves the store as its last committed SQLite
    // transaction left it: the value is still good to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Creates a new store in `dir` (its master key wrapped by `guard`) and opens it.
    pub fn init(
        dir: &Path,
        guard: &dyn KeyGuard,
        provisioning: Provisioning,
        opts: EngineOptions,
    ) -> Result<Engine> {
        let store = match provisioning.ine_root {
            Some(ine_root) => Store::init(
                dir,
                guard,
                &InePublicKeys {
                    seal_key: provisioning.endpoint_public_key,
                    ine_root,
                },
                opts.collector.clone(),
                store_options(&opts),
            )?,
            None => Store::init_unanchored(
                dir,
                guard,
                provisioning.endpoint_public_key,
                opts.collector.clone(),
                store_options(&opts),
            )?,
        };
        Engine::from_store(store, provisioning, opts)
    }

    /// Opens the store in `dir`. A store that cannot be opened is left untouched and reported
    /// (`CorruptStore`, `StoreVersion`, `WrongDevice`, …); see [`Engine::set_aside`].
    pub fn open(
        dir: &Path,
        guard: &dyn KeyGuard,
        provisioning: Provisioning,
        opts: EngineOptions,
    ) -> Result<Engine> {
        let mut store = Store::open(dir, guard, store_options(&opts))?;
        // A store made before v1.1 (or by a build without a root) gets the root now; a store
        // holding another root is refused (`ProvisioningMismatch`).
        if let Some(ine_root) = provisioning.ine_root {
            store.provision(&InePublicKeys {
                seal_key: provisioning.endpoint_public_key,
                ine_root,
            })?;
        }
        Engine::from_store(store, provisioning, opts)
    }

    /// Opens the store in `dir` with the trust material it was created with (the seal key and
    /// the INE root it keeps) and `tls` for an https endpoint: for a tool that opens a device
    /// made earlier without the app's [`Provisioning`] at hand (the CLI's device commands).
    /// An app that ships its provisioning uses [`Engine::open`], which also installs a root
    /// the store lacks.
    pub fn open_existing(
        dir: &Path,
        guard: &dyn KeyGuard,
        tls: TlsConfig,
        opts: EngineOptions,
    ) -> Result<Engine> {
        let store = Store::open(dir, guard, store_options(&opts))?;
        let provisioning = Provisioning {
            endpoint_public_key: store.endpoint_public(),
            tls,
            ine_root: store.ine_root()?,
        };
        Engine::from_store(store, provisioning, opts)
    }

    /// Moves an unusable store aside, every byte kept, so a new one can be created; returns
    /// where it went.
    pub fn set_aside(dir: &Path) -> Result<PathBuf> {
        Store::set_aside(dir)
    }

    fn from_store(store: Store, provisioning: Provisioning, opts: EngineOptions) -> Result<Self> {
        let meter = Arc::new(Meter::default());
        let engine = Engine {
            store: Mutex::new(None),
            closed: AtomicBool::new(false),
            syncing: AtomicBool::new(false),
            run_gate: Mutex::new(None),
            run_ended: Condvar::new(),
            facts: Mutex::new(Facts::default()),
            provisioning,
            opts,
            control: Arc::new(Control::new(meter.clone())),
            meter,
            listener: Mutex::new(None),
            transport: Mutex::new(None),
        };
        engine.refresh_facts(&store)?;
        *lock(&engine.store) = Some(store);
        Ok(engine)
    }

    /// Runs `f` on the open store, asking a running sync to yield it first.
    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::EngineClosed);
        }
        let waiting = self.control.call_waiting();
        let mut guard = lock(&self.store);
        drop(waiting);
        let store = guard.as_mut().ok_or(Error::EngineClosed)?;
        let out = f(store);
        self.refresh_facts(store)?;
        out
    }

    fn refresh_facts(&self, store: &Store) -> Result<()> {
        let facts = Facts {
            queue: store.status()?,
            registered: store.registration_id()?.is_some(),
            activated_until: store.activation()?.map(|a| a.expires_at),
        };
        *lock(&self.facts) = facts;
        Ok(())
    }

    fn emit(&self, event: &Event) {
        let listener = lock(&self.listener).clone();
        if let Some(l) = listener {
            l.on_event(event);
        }
    }

    fn emit_capture(&self, id: CaptureId, state: State, reason: Option<String>) {
        self.emit(&Event::Capture(CaptureChange {
            id,
            state,
            reason,
            next_attempt_at: None,
        }));
    }

    /// Subscribes the app to events and progress (`None` unsubscribes).
    pub fn set_listener(&self, listener: Option<Arc<dyn Listener>>) {
        *lock(&self.listener) = listener.clone();
        let sink: Option<control::ChangeSink> = listener.map(|l| {
            let f: control::ChangeSink =
                Arc::new(move |c: &CaptureChange| l.on_event(&Event::Capture(c.clone())));
            f
        });
        self.control.set_sink(sink);
    }

    /// This device's id (hex; no personal data).
    pub fn device_id(&self) -> Result<String> {
        self.with_store(|s| Ok(s.device_id().to_string()))
    }

    /// Registers the device with the endpoint at `endpoint_url` ("Registro ciudadano"); the
    /// endpoint emails an activation code to `email`.
    pub fn register(
        &self,
        endpoint_url: &str,
        email: &str,
        provider: Provider,
        front: &[u8],
    ) -> Result<Registered> {
        let transport = self.transport_for(endpoint_url)?;
        let resp = self.with_store(|s| {
            sync::register_blocking(s, &transport, endpoint_url, email, provider, front)
        })?;
        Ok(Registered {
            code_expires_at: resp.code_expires_at,
        })
    }

    /// Activates the device with the emailed code.
    pub fn activate(&self, code: &str) -> Result<Activated> {
        let transport = self.stored_transport()?;
        let resp = self.with_store(|s| sync::activate_blocking(s, &transport, code))?;
        Ok(Activated {
            expires_at: resp.expires_at,
            processes: resp.processes.len(),
        })
    }

    /// Adds or replaces process definitions from JSON (a list, as `examples/processes.json`).
    pub fn add_processes_json(&self, json: &[u8]) -> Result<usize> {
        let list = Process::parse_json_list(json)?;
        self.add_processes(&list)?;
        Ok(list.len())
    }

    /// Adds or replaces process definitions (e.g. parsed with [`Process::parse_json_list`]).
    pub fn add_processes(&self, list: &[Process]) -> Result<()> {
        self.with_store(|s| s.put_processes(list))
    }

    /// The processes this device knows.
    pub fn processes(&self) -> Result<Vec<Process>> {
        self.with_store(|s| s.processes())
    }

    /// Validates, encrypts and durably stores a capture; returns once it is durable.
    pub fn capture(&self, capture: NewCapture) -> Result<CaptureId> {
        let id = self.with_store(|s| s.capture(capture))?;
        self.emit_capture(id, State::Captured, None);
        Ok(id)
    }

    /// What a status screen shows. Never waits for a running sync.
    pub fn status(&self) -> Result<EngineStatus> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::EngineClosed);
        }
        if let Ok(mut guard) = self.store.try_lock() {
            let store = guard.as_mut().ok_or(Error::EngineClosed)?;
            self.refresh_facts(store)?;
        }
        let f = *lock(&self.facts);
        Ok(EngineStatus {
            queue: f.queue,
            syncing: self.syncing.load(Ordering::SeqCst),
            registered: f.registered,
            activated_until: f.activated_until,
            network: self.meter.kind(),
            policy: self.meter.policy(),
            usage: self.meter.usage(),
        })
    }

    /// Every capture still on the device (no personal data: ids, states, reasons, sizes).
    pub fn captures(&self) -> Result<Vec<CaptureInfo>> {
        self.with_store(|s| s.list())
    }

    /// One capture's queue row.
    pub fn capture_info(&self, id: &CaptureId) -> Result<CaptureInfo> {
        self.with_store(|s| s.info(id))
    }

    /// What opening the store found among its part files (ADR 0013): captures rebuilt after
    /// a power loss, interrupted captures removed, damaged files kept aside, purges finished.
    /// Ids, counts and paths only. An app may log it; a field tool shows it.
    pub fn open_report(&self) -> Result<OpenReport> {
        self.with_store(|s| Ok(s.open_report().clone()))
    }

    /// Decrypts the device's own copy of capture `id` (its images and manifest) into
    /// `out_dir`, returning the files written. For a support screen or a field tester checking
    /// what was captured; the copy holds personal data, so the caller owns its deletion.
    pub fn export(&self, id: &CaptureId, out_dir: &Path) -> Result<Vec<PathBuf>> {
        self.with_store(|s| s.export(id, out_dir))
    }

    /// The endpoint's receipts, re-verified.
    pub fn receipts(&self) -> Result<Vec<ReceiptInfo>> {
        self.with_store(|s| s.receipts())
    }

    /// Queues a quarantined capture again (after the user fixed what the endpoint refused).
    pub fn retry(&self, id: &CaptureId) -> Result<()> {
        self.with_store(|s| s.retry_quarantined(id))?;
        self.emit_capture(*id, State::Captured, None);
        Ok(())
    }

    /// The app says which link the phone is on now (may change during a sync).
    pub fn set_network(&self, kind: NetworkKind) {
        self.meter.set_kind(kind);
        self.control.policy_changed();
    }

    /// Sets the network policy and starts a new cellular allowance (may change during a sync).
    pub fn set_network_policy(&self, policy: NetworkPolicy) {
        self.meter.set_policy(policy);
        self.control.policy_changed();
    }

    /// Bytes moved so far (see [`network`] for what is counted).
    pub fn network_usage(&self) -> NetworkUsage {
        self.meter.usage()
    }

    /// Asks a running sync to stop at its next exchange boundary (from any thread). A sync
    /// that starts later is not affected.
    pub fn cancel(&self) {
        let _gate = lock(&self.run_gate);
        if self.syncing.load(Ordering::SeqCst) {
            self.control.cancel();
        }
    }

    /// Closes the store: cancels a running sync, waits for it to stop, releases the store.
    /// Every later call gets `EngineClosed`; closing twice is harmless. Captures are durable
    /// when `capture` returns, so closing (or not) never loses one.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.control.cancel();
        self.wait_for_run_end();
        let store = lock(&self.store).take();
        drop(store);
        *lock(&self.transport) = None;
    }

    /// Waits until a running sync has stopped, so it ends with its report rather than finding
    /// the store gone. Not when the run is on this very thread (a listener closing the engine).
    fn wait_for_run_end(&self) {
        let here = std::thread::current().id();
        let mut runner = lock(&self.run_gate);
        while runner.is_some_and(|t| t != here) {
            runner = self
                .run_ended
                .wait(runner)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The transport for `url`, built once and kept (HTTP + the network meter).
    fn transport_for(&self, url: &str) -> Result<Arc<dyn Transport>> {
        let mut cached = lock(&self.transport);
        if let Some((u, t)) = cached.as_ref()
            && u == url
        {
            return Ok(t.clone());
        }
        #[cfg(feature = "testkit")]
        let injected = self.opts.transport.clone();
        #[cfg(not(feature = "testkit"))]
        let injected: Option<Arc<dyn Transport>> = None;
        let inner: Arc<dyn Transport> = match injected {
            Some(t) => t,
            None => Arc::new(HttpTransport::new(url, &self.provisioning.tls)?),
        };
        let control: Arc<dyn control::RunControl> = self.control.clone();
        let t: Arc<dyn Transport> =
            Arc::new(MeteredTransport::new(inner, self.meter.clone(), control));
        *cached = Some((url.to_string(), t.clone()));
        Ok(t)
    }

    /// The transport for the endpoint the device registered with.
    fn stored_transport(&self) -> Result<Arc<dyn Transport>> {
        let url = self
            .with_store(|s| s.endpoint_url())?
            .ok_or(Error::NotRegistered)?;
        self.transport_for(&url)
    }
}

fn store_options(opts: &EngineOptions) -> StoreOptions {
    StoreOptions {
        disk_reserve_bytes: opts.disk_reserve_bytes,
        clock: opts.clock(),
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("closed", &self.closed.load(Ordering::SeqCst))
            .field("syncing", &self.syncing.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}
