//! A simulated phone: a real `Store` on real SQLite and part files in the world's folder,
//! registered and activated through the simulated network; it captures, runs syncs that may
//! be cut by a crash (the run dropped where it stands, or unwound from its run control
//! between recording a receipt and purging), and restarts by reopening its store from disk
//! with nothing kept in memory.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::sync::control::{Changed, RunControl};
use apoyo_sync::testkit::sync::{CaptureChange, Hold, SyncOptions};
use apoyo_sync::wire::Provider;
use apoyo_sync::{
    CaptureId, CardFields, CredentialModel, FileKeyGuard, Images, NewCapture, SharedClock, State,
};

use super::net::SimNet;
use super::world::Shared;

/// The payload of a crash unwound out of a run (never printed: `resume_unwind` skips the
/// panic hook).
struct SimCrash;

/// The run control: never holds; hears quarantines; may crash the device right after a
/// receipt is recorded, before the capture is purged.
struct SimControl(Arc<Shared>);

impl RunControl for SimControl {
    fn hold(&self) -> Option<Hold> {
        None
    }
    fn hold_for(&self, _hold: Hold) {}
    fn changed(&self) -> Changed<'_> {
        Box::pin(std::future::pending())
    }
    fn capture_changed(&self, change: &CaptureChange) {
        let crash = {
            let mut st = self.0.lock();
            if change.state == State::Quarantined {
                let why = change.reason.clone().unwrap_or_default();
                st.quarantines.push((change.id, why));
            }
            let p = st.cfg.crash_rate;
            st.faults && st.cfg.crashes && change.state == State::Committed && st.rng.f64() < p
        };
        if crash {
            self.0
                .note("  device crashes between receipt and purge".into());
            self.0.count_crash();
            resume_unwind(Box::new(SimCrash));
        }
    }
}

pub struct SimDevice {
    pub idx: usize,
    pub dir: PathBuf,
    keyring: PathBuf,
    pub store: Option<Store>,
    /// Every capture the store reported saved, with its citizen.
    pub saved: Vec<(CaptureId, u32)>,
    rt: tokio::runtime::Runtime,
}

/// A single-threaded runtime. Its timers are on (the endpoint's body idle timeout uses one;
/// bodies here arrive at once, so it never fires); the devices' waits are virtual.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn options(shared: &Shared) -> StoreOptions {
    let clock: SharedClock = Arc::new(shared.clock.clone());
    StoreOptions {
        disk_reserve_bytes: 0,
        clock,
    }
}

/// A JPEG-framed (or PNG-framed) image of a length in `len`, drawn from the seed.
fn image(rng: &mut fastrand::Rng, len: std::ops::Range<usize>, png: bool) -> Vec<u8> {
    let len = rng.usize(len);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    if png {
        v[..8].copy_from_slice(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
    } else {
        v[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
        v[len - 2..].copy_from_slice(&[0xFF, 0xD9]);
    }
    v
}

/// A well-formed clave de elector for citizen `i`.
pub fn clave(i: u32) -> String {
    let mut n = i;
    let mut letters = [b'A'; 6];
    for l in letters.iter_mut().rev() {
        *l = b'A' + (n % 26) as u8;
        n /= 26;
    }
    let letters = std::str::from_utf8(&letters).expect("ascii");
    format!("{letters}850615{:02}M{:03}", 1 + i % 32, i % 1000)
}

impl SimDevice {
    /// Creates the store, registers and activates it (a fault-free network).
    pub fn setup(idx: usize, world: &Path, shared: &Arc<Shared>) -> SimDevice {
        let dir = world.join(format!("device-{idx}"));
        let keyring = world.join(format!("keyring-{idx}"));
        let guard = FileKeyGuard::open_or_create(&keyring).expect("keyring");
        let keys = shared.lock().endpoint.provisioning();
        let store = Store::init(&dir, &guard, &keys, None, options(shared)).expect("init");
        let mut d = SimDevice {
            idx,
            dir,
            keyring,
            store: Some(store),
            saved: Vec::new(),
            rt: runtime(),
        };
        d.activate(shared);
        d
    }

    fn activate(&mut self, shared: &Arc<Shared>) {
        let net = SimNet {
            shared: shared.clone(),
            device: self.idx,
        };
        let email = format!("device{}@example.org", self.idx);
        let front = image(&mut shared.lock().rng, 600..601, false);
        let store = self.store.as_mut().expect("open store");
        self.rt
            .block_on(apoyo_sync::testkit::sync::device::register(
                store,
                &net,
                "http://sim.invalid",
                &email,
                Provider::Google,
                &front,
            ))
            .expect("registration");
        let code = self.rt.block_on(mailbox_code(shared, &email));
        self.rt
            .block_on(apoyo_sync::testkit::sync::device::activate(
                store, &net, &code,
            ))
            .expect("activation");
    }

    pub fn store(&mut self) -> &mut Store {
        self.store.as_mut().expect("open store")
    }

    /// Captures a support of `citizen` with tiny images (now and then a selfie of two or three
    /// PATCH pieces, so uploads resume mid-part).
    pub fn capture(&mut self, shared: &Shared, citizen: u32) {
        let images = {
            let rng = &mut shared.lock().rng;
            let selfie = if rng.u32(0..12) == 0 {
                66_000..100_000
            } else {
                200..2_000
            };
            Images {
                front: image(rng, 200..2_000, false),
                back: image(rng, 200..2_000, false),
                selfie: image(rng, selfie, false),
                signature: image(rng, 100..800, true),
            }
        };
        let c = NewCapture {
            process_id: "nacional".into(),
            model: CredentialModel::parse("G").expect("model"),
            fields: CardFields {
                clave_elector: clave(citizen),
                ..Default::default()
            },
            location: None,
            images,
            collector: None,
        };
        // Capture ids are time-ordered: a second between captures keeps their order, and so
        // the run's, a function of the seed.
        shared.advance(Duration::from_secs(1));
        let id = self.store().capture(c).expect("a valid capture is saved");
        let n = {
            let mut st = shared.lock();
            let n = st.names.len();
            st.names.insert(id.to_string(), n);
            n
        };
        shared.note(format!("d{} captures c{n} (citizen {citizen})", self.idx));
        self.saved.push((id, citizen));
    }

    /// One sync run of `budget`; a crash drops it where it stands and restarts the device.
    pub fn sync(&mut self, shared: &Arc<Shared>, budget: Duration, seed: u64, step: u32) {
        shared.note(format!("d{} sync, budget {}s", self.idx, budget.as_secs()));
        let net = SimNet {
            shared: shared.clone(),
            device: self.idx,
        };
        let control: Arc<dyn RunControl> = Arc::new(SimControl(shared.clone()));
        let opts = SyncOptions {
            budget,
            seed: Some(seed ^ u64::from(step)),
            control: Some(control),
            ..SyncOptions::default()
        };
        let store = self.store.as_mut().expect("open store");
        let run = async {
            tokio::select! {
                biased;
                r = apoyo_sync::testkit::sync::engine::run(store, &net, opts) => Some(r),
                _ = shared.crashed() => None,
            }
        };
        let rt = &self.rt;
        match catch_unwind(AssertUnwindSafe(|| rt.block_on(run))) {
            Ok(Some(Err(e))) => {
                // A run fails only on a local problem, which this world never causes.
                shared.note(format!("d{} run fails: {e}", self.idx));
                shared
                    .lock()
                    .errors
                    .push(format!("d{} sync run failed: {e}", self.idx));
            }
            Ok(Some(Ok(r))) => {
                shared.note(format!(
                    "d{} run ends: {:?}, committed {}, duplicates {}, pending {}",
                    self.idx, r.stopped, r.committed, r.duplicates, r.pending
                ));
            }
            Ok(None) => self.restart(shared, "in flight"),
            Err(payload) if payload.is::<SimCrash>() => {
                self.rt = runtime();
                self.restart(shared, "after a receipt");
            }
            Err(payload) => resume_unwind(payload),
        }
    }

    /// The device dies while idle (between two steps) and restarts.
    pub fn crash_idle(&mut self, shared: &Shared) {
        self.restart(shared, "idle");
    }

    /// The process is gone: the store is dropped without another write and reopened from
    /// disk, as a new process would.
    fn restart(&mut self, shared: &Shared, when: &str) {
        shared.note(format!("d{} crashes ({when}) and restarts", self.idx));
        self.store = None;
        let guard = FileKeyGuard::open_or_create(&self.keyring).expect("keyring");
        let store = Store::open(&self.dir, &guard, options(shared)).expect("reopen after crash");
        self.store = Some(store);
    }

    /// With the network healed, runs syncs until nothing is pending (or gives up: a
    /// violation the checks report). At least one run: the app syncs when it starts, and a
    /// run first finishes the purges a crash interrupted (they are not pending).
    pub fn drain(&mut self, shared: &Arc<Shared>) {
        for round in 0..20 {
            if round > 0 && self.store().pending_count().expect("pending") == 0 {
                return;
            }
            self.sync(shared, Duration::from_secs(3600), 0x5EED, 1000 + round);
        }
    }
}

async fn mailbox_code(shared: &Shared, email: &str) -> String {
    let req = axum::http::Request::builder()
        .uri(format!("/v1/dev/mailbox/{email}"))
        .body(axum::body::Body::empty())
        .expect("request");
    let (status, _, body) = super::endpoint::call(shared.router(), req, 1 << 16).await;
    assert_eq!(status, 200, "the dev mailbox holds the code");
    let v: serde_json::Value = serde_json::from_slice(&body.expect("body")).expect("JSON");
    v["code"].as_str().expect("a code").to_string()
}
