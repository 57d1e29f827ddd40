//! The world one seed builds and runs: the virtual clock, the endpoint, the devices and the
//! state the network shares with them ([`Shared`]: the seeded generator, the trace, requests
//! held back, the crash signal), and the schedule: captures, sync runs under faults, hours
//! offline (uploads expire), idle device crashes, endpoint restarts; then a healed network
//! until every device is drained, and the checks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::sync::transport::Request;
use apoyo_sync::{CaptureId, Process};

use super::device::SimDevice;
use super::endpoint::SimEndpoint;
use super::net::{Fate, Named, fate_name};
use super::{Config, Outcome, check};

/// What the network and the devices' run control share (all behind one lock; the world is
/// single-threaded, the lock only satisfies `Send + Sync`).
pub struct Shared {
    pub clock: ManualClock,
    state: Mutex<State>,
    crash: tokio::sync::Notify,
}

pub struct State {
    pub rng: fastrand::Rng,
    pub trace: Vec<String>,
    late: Vec<Request>,
    pub endpoint: SimEndpoint,
    /// Faults (and crashes) are drawn only while the world runs, not at setup or healing.
    pub faults: bool,
    pub cfg: Config,
    /// Capture id → its number in the trace.
    pub names: HashMap<String, usize>,
    /// Quarantines seen by the run control: (capture, reason).
    pub quarantines: Vec<(CaptureId, String)>,
    /// Sync runs that failed (a local problem: never expected here).
    pub errors: Vec<String>,
    pub crashes: u32,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn note(&self, line: String) {
        let t = self.elapsed();
        self.lock().trace.push(format!("{t:>9.3}s {line}"));
    }

    fn elapsed(&self) -> f64 {
        use apoyo_sync::Clock;
        (self.clock.now() - super::START).as_seconds_f64()
    }

    pub fn advance(&self, d: Duration) {
        self.clock
            .advance(time::Duration::try_from(d).expect("small duration"));
    }

    pub fn router(&self) -> axum::Router {
        self.lock().endpoint.router()
    }

    pub fn arm(&self, status: u16, retry_after: Option<u32>) {
        self.lock().endpoint.chaos.arm(status, retry_after);
    }

    pub fn restart_endpoint(&self) {
        self.lock().endpoint.restart();
    }

    pub fn hold_late(&self, req: Request) {
        self.lock().late.push(req);
    }

    pub fn take_late(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().late)
    }

    /// Signals the device's crash to the world, which drops the run where it stands.
    pub fn crash_now(&self) {
        self.lock().crashes += 1;
        self.crash.notify_one();
    }

    /// Counts a crash unwound out of the run (no signal: the unwind is the signal).
    pub fn count_crash(&self) {
        self.lock().crashes += 1;
    }

    pub async fn crashed(&self) {
        self.crash.notified().await
    }

    /// The route a request is for, for the trace (capture numbers, no random ids).
    pub fn route_name(&self, req: &Request) -> String {
        let p = req.path.as_str();
        if let Some(id) = p.strip_prefix("/v1/supports/") {
            let n = self.lock().names.get(id).copied();
            return format!("commit c{}", n.map_or("?".into(), |n| n.to_string()));
        }
        match p {
            "/v1/uploads" => "create-upload".into(),
            "/v1/processes" => "catalog".into(),
            _ if p.starts_with("/v1/uploads/") => "upload".into(),
            _ => p.split('/').take(3).collect::<Vec<_>>().join("/"),
        }
    }

    /// Draws what happens to a request: its fate, its latency, and whether the requests held
    /// back are delivered first.
    pub fn draw_fate(&self, device: usize, req: &Request) -> (Fate, Duration, bool) {
        let route = self.route_name(req);
        let (fate, latency, late_first) = {
            let mut st = self.lock();
            let faults = st.faults;
            let cfg = st.cfg;
            let rng = &mut st.rng;
            let latency = Duration::from_millis(20 + rng.u64(0..400));
            if !faults {
                (Fate::Deliver, latency, false)
            } else {
                let late_first = rng.f64() < 0.2;
                (draw(rng, &cfg, req.body.len()), latency, late_first)
            }
        };
        self.note(format!(
            "d{device} {} {route} ({} bytes) -> {}",
            req.method_name(),
            req.body.len(),
            fate_name(fate)
        ));
        (fate, latency, late_first)
    }
}

/// One fault, weighted; `Deliver` with probability `1 - cfg.fault_rate`.
fn draw(rng: &mut fastrand::Rng, cfg: &Config, body_len: usize) -> Fate {
    if rng.f64() >= cfg.fault_rate {
        return Fate::Deliver;
    }
    match rng.u32(0..100) {
        0..15 => Fate::DropRequest,
        15..30 => Fate::DropAnswer,
        30..38 => Fate::Duplicate,
        38..46 => Fate::Late,
        46..58 if body_len > 1 => Fate::CutBody(rng.usize(0..body_len)),
        46..58 => Fate::DropRequest,
        58..66 => Fate::Status(503, None),
        66..72 => Fate::Status(503, Some(rng.u32(1..120))),
        72..78 => Fate::Status(429, Some(rng.u32(1..120))),
        78..82 => Fate::Status(429, None),
        82..86 => Fate::Status(500, None),
        86..91 => Fate::RestartEndpoint,
        91..94 => Fate::SlowAnswer,
        94..97 if cfg.crashes => Fate::CrashBefore,
        _ if cfg.crashes => Fate::CrashAfter,
        _ => Fate::DropAnswer,
    }
}

/// The processes of the simulated world.
pub const PROCESSES: &str = r#"[
  {"id": "nacional", "name": "Proceso nacional de prueba", "accepted_models": ["E", "F", "G", "H"],
   "vigencia_cutoff": "2022-01-01", "scope": "national"}
]"#;

/// Builds the world of `seed` in `dir`, runs its schedule, heals it and checks it.
pub fn run(seed: u64, cfg: Config, dir: &Path) -> Outcome {
    let clock = ManualClock::new(super::START);
    let processes = Process::parse_json_list(PROCESSES.as_bytes()).expect("processes");
    let endpoint = SimEndpoint::start(dir, processes, clock.clone(), cfg.upload_ttl);
    let shared = Arc::new(Shared {
        clock,
        state: Mutex::new(State {
            rng: fastrand::Rng::with_seed(seed),
            trace: Vec::new(),
            late: Vec::new(),
            endpoint,
            faults: false,
            cfg,
            names: HashMap::new(),
            quarantines: Vec::new(),
            errors: Vec::new(),
            crashes: 0,
        }),
        crash: tokio::sync::Notify::new(),
    });
    let n_devices = 1 + shared.lock().rng.usize(0..cfg.max_devices);
    let mut devices: Vec<SimDevice> = (0..n_devices)
        .map(|i| SimDevice::setup(i, dir, &shared))
        .collect();
    let mut citizens = 0u32;
    shared.lock().faults = true;
    for step in 0..cfg.steps {
        schedule_step(step, &shared, &mut devices, &mut citizens);
    }
    shared.lock().faults = false;
    shared.note("heal: the network is fault-free from here".into());
    for d in &mut devices {
        d.drain(&shared);
    }
    let violations = check::world(&shared, &mut devices);
    let st = shared.lock();
    Outcome {
        seed,
        trace: st.trace.clone(),
        violations,
        captures: devices.iter().map(|d| d.saved.len()).sum(),
        crashes: st.crashes,
        endpoint_restarts: st.endpoint.restarts,
    }
}

/// One step of the schedule, drawn from the seed.
fn schedule_step(step: u32, shared: &Arc<Shared>, devices: &mut [SimDevice], citizens: &mut u32) {
    let (action, d, n) = {
        let mut st = shared.lock();
        let action = st.rng.u32(0..100);
        let d = st.rng.usize(0..devices.len());
        let n = st.rng.u64(0..u64::MAX);
        (action, d, n)
    };
    match action {
        0..35 => {
            // Now and then a citizen already captured on another device (a duplicate).
            // (never one this device holds: the store refuses that before saving).
            let again = (*citizens > 0 && n % 10 == 0)
                .then(|| (n / 10 % u64::from(*citizens)) as u32)
                .filter(|c| !devices[d].saved.iter().any(|s| s.1 == *c));
            let citizen = again.unwrap_or_else(|| {
                *citizens += 1;
                *citizens - 1
            });
            devices[d].capture(shared, citizen);
        }
        35..78 => {
            let budget = Duration::from_secs(30 + n % 900);
            devices[d].sync(shared, budget, n, step);
        }
        78..86 => {
            use apoyo_sync::Clock;
            // Offline for a while: tus uploads expire (kept well inside the activation).
            if shared.clock.now() - super::START < time::Duration::hours(10) {
                let mins = 5 + n % 120;
                shared.note(format!("offline {mins} min"));
                shared.advance(Duration::from_secs(mins * 60));
            }
        }
        86..93 => devices[d].crash_idle(shared),
        93..97 => {
            shared.note("endpoint restarts".into());
            shared.restart_endpoint();
        }
        _ => {
            let late = shared.take_late();
            shared.note(format!(
                "{} held-back requests dropped for good",
                late.len()
            ));
        }
    }
}
