//! The field run: set up, start the devices (threads, or processes SIGKILLed at random with
//! `--kill-rate`), sample the links and the endpoint for the live display and the report's
//! bytes-over-time chart, stop at drain or deadline, then account.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::account::{self, Report, Timeline};
use super::device::{self, Journal, Live, SyncPlan};
use super::setup::{self, Device};
use super::{FieldConfig, FieldError};
use crate::proxy::FaultLog;

/// How often the links are sampled, and how often the display is refreshed.
const SAMPLE: Duration = Duration::from_millis(250);
const TICK_EVERY: u32 = 4;

/// A live view of the run.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub devices: Vec<DeviceSnap>,
    pub faults: u64,
    pub wire_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct DeviceSnap {
    pub captured: u64,
    pub sent_bytes: u64,
    /// Decided by the endpoint (counted or recorded as duplicate).
    pub counted: u64,
    pub drained: bool,
    pub kills: u64,
}

/// The report and what the HTML page draws.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    pub timeline: Timeline,
    /// The devices (folders, ids, plans), to recount or inspect after the run.
    pub devices: Vec<Device>,
}

/// A device process and the schedule of its next kill.
struct Proc {
    child: Option<Child>,
    next_kill: Instant,
    rng: fastrand::Rng,
}

/// The running devices: threads, or processes with their kill schedules.
struct Fleet {
    lives: Vec<Arc<Live>>,
    threads: Vec<std::thread::JoinHandle<Result<(), FieldError>>>,
    procs: Vec<Proc>,
    stop: Arc<AtomicBool>,
    urls: Vec<String>,
    start: Instant,
    deadline: Instant,
}

impl Fleet {
    fn start(
        cfg: &FieldConfig,
        devices: &[Device],
        urls: Vec<String>,
        start: Instant,
    ) -> Result<Fleet, FieldError> {
        let mut f = Fleet {
            lives: devices.iter().map(|_| Arc::new(Live::default())).collect(),
            threads: Vec::new(),
            procs: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            urls,
            start,
            deadline: Instant::now() + cfg.deadline,
        };
        match (&cfg.kill_rate, &cfg.device_exe) {
            (Some(_), Some(exe)) => {
                for d in devices {
                    let mut rng = fastrand::Rng::with_seed(crate::schedule::derive(
                        cfg.seed,
                        d.index as u64,
                        0,
                        11,
                    ));
                    let next_kill = Instant::now() + kill_interval(cfg, &mut rng);
                    let child = spawn(exe, d, &f.urls[d.link], f.deadline, &f.lives[d.index])?;
                    f.procs.push(Proc {
                        child: Some(child),
                        next_kill,
                        rng,
                    });
                }
            }
            (Some(_), None) => {
                return Err(FieldError::Setup(
                    "--kill-rate needs the apoyo binary for device processes".into(),
                ));
            }
            _ => {
                for d in devices {
                    let sp = SyncPlan {
                        url: f.urls[d.link].clone(),
                        backoff: cfg.backoff,
                        seed: crate::schedule::derive(cfg.seed, d.index as u64, 0, 8),
                        deadline: f.deadline,
                        start,
                        marks: super::marks::Recorder::open(&d.dir)?,
                    };
                    let (d, live, stop) = (d.clone(), f.lives[d.index].clone(), f.stop.clone());
                    f.threads.push(std::thread::spawn(move || {
                        device_thread(&d, &sp, &live, &stop)
                    }));
                }
            }
        }
        Ok(f)
    }

    fn drained(&self) -> bool {
        self.lives.iter().all(|l| l.drained.load(Ordering::Relaxed))
    }

    /// Stops every device; the errors of those that failed.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for mut p in self.procs {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let mut errors = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push("a device thread panicked".into()),
            }
        }
        errors
    }
}

/// Runs the field test; `on_tick` is called about once a second.
pub fn run(cfg: &FieldConfig, on_tick: &mut dyn FnMut(&Snapshot)) -> Result<Outcome, FieldError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| FieldError::io("runtime", e))?;
    let ep = rt.block_on(setup::endpoint(cfg))?;
    let devices = setup::devices(cfg, &ep, &rt)?;
    let sink = std::fs::File::create(cfg.work_dir.join("faults.log"))
        .map_err(|e| FieldError::io("fault log", e))?;
    let log = Arc::new(FaultLog::new(Some(Box::new(sink))));
    let t0 = OffsetDateTime::now_utc();
    let proxies = rt.block_on(setup::links(cfg, ep.addr, log.clone()))?;
    let urls = proxies
        .iter()
        .map(|p| format!("http://{}", p.addr))
        .collect();
    let links: Vec<_> = proxies.iter().map(|p| p.link.clone()).collect();
    let mut fleet = Fleet::start(cfg, &devices, urls, log.start())?;
    let series = watch(cfg, &mut fleet, &devices, &log, &links, &ep.db, on_tick)?;
    let elapsed = fleet.start.elapsed();
    let lives = fleet.lives.clone();
    let errors = fleet.stop();
    let wire: Vec<(u64, u64)> = links
        .iter()
        .map(|l| {
            (
                l.up_bytes.load(Ordering::Relaxed),
                l.down_bytes.load(Ordering::Relaxed),
            )
        })
        .collect();
    rt.block_on(async {
        for p in proxies {
            p.shutdown().await;
        }
        if let Some(e) = ep.running {
            e.shutdown().await;
        }
    });
    if let Some(e) = errors.first() {
        return Err(FieldError::Setup(format!("a device failed: {e}")));
    }
    let (report, timeline) = account::compute(account::Inputs {
        cfg,
        devices: &devices,
        lives: &lives,
        endpoint_db: &ep.db,
        log: &log,
        wire: &wire,
        series,
        elapsed,
        t0,
    })?;
    Ok(Outcome {
        report,
        timeline,
        devices,
    })
}

/// Samples the links (for the bytes-over-time chart), kills and restarts device processes,
/// and refreshes the display, until every device drained or the deadline passed.
fn watch(
    cfg: &FieldConfig,
    fleet: &mut Fleet,
    devices: &[Device],
    log: &FaultLog,
    links: &[Arc<crate::proxy::Link>],
    db: &Path,
    on_tick: &mut dyn FnMut(&Snapshot),
) -> Result<Vec<Vec<(u64, u64)>>, FieldError> {
    let mut series: Vec<Vec<(u64, u64)>> = vec![Vec::new(); links.len()];
    let mut tick = 0u32;
    loop {
        std::thread::sleep(SAMPLE);
        let ms = fleet.start.elapsed().as_millis() as u64;
        for (s, l) in series.iter_mut().zip(links) {
            s.push((ms, l.up_bytes.load(Ordering::Relaxed)));
        }
        manage_kills(cfg, devices, fleet)?;
        let done = fleet.drained();
        let late = Instant::now() >= fleet.deadline;
        tick += 1;
        if tick.is_multiple_of(TICK_EVERY) || done || late {
            on_tick(&snapshot(
                devices,
                &fleet.lives,
                log,
                links,
                db,
                fleet.start,
            ));
        }
        if done || late {
            return Ok(series);
        }
    }
}

fn device_thread(
    d: &Device,
    sp: &SyncPlan,
    live: &Live,
    stop: &AtomicBool,
) -> Result<(), FieldError> {
    let mut store = device::open_store(&d.dir)?;
    let mut journal = Journal::load(&d.dir)?;
    device::capture_all(&mut store, &d.plan, &mut journal, live)?;
    device::sync_until_drained(&mut store, sp, live, stop, |_| {})?;
    Ok(())
}

/// Time to the next SIGKILL: exponential, `rate` kills per minute on average.
fn kill_interval(cfg: &FieldConfig, rng: &mut fastrand::Rng) -> Duration {
    let rate = cfg.kill_rate.unwrap_or(0.0).max(1e-6) / 60.0;
    Duration::from_secs_f64((-(1.0 - rng.f64()).ln() / rate).min(3600.0))
}

fn spawn(
    exe: &Path,
    d: &Device,
    url: &str,
    deadline: Instant,
    live: &Arc<Live>,
) -> Result<Child, FieldError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.dir.join("stderr.log"))
        .map_err(|e| FieldError::io("device log", e))?;
    let mut child = Command::new(exe)
        .arg("fieldtest-device")
        .arg("--dir")
        .arg(&d.dir)
        .args(["--url", url, "--deadline-ms", &left.as_millis().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| FieldError::io("device process", e))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| FieldError::Setup("device process has no stdout".into()))?;
    let live = live.clone();
    let base_sent = live.sent_bytes.load(Ordering::Relaxed);
    let base_retries = live.retries.load(Ordering::Relaxed);
    let base_runs = live.runs.load(Ordering::Relaxed);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            if !line.starts_with("progress ") || v.len() != 6 {
                continue;
            }
            live.captured.store(v[0], Ordering::Relaxed);
            live.refused.store(v[1], Ordering::Relaxed);
            live.sent_bytes.store(base_sent + v[2], Ordering::Relaxed);
            live.retries.store(base_retries + v[3], Ordering::Relaxed);
            live.runs.store(base_runs + v[4], Ordering::Relaxed);
        }
    });
    Ok(child)
}

/// SIGKILLs device processes on their schedule and restarts them; marks drained ones.
fn manage_kills(cfg: &FieldConfig, devices: &[Device], f: &mut Fleet) -> Result<(), FieldError> {
    let Some(exe) = &cfg.device_exe else {
        return Ok(());
    };
    for (d, p) in devices.iter().zip(f.procs.iter_mut()) {
        let live = &f.lives[d.index];
        let Some(child) = p.child.as_mut() else {
            continue;
        };
        let exited = child
            .try_wait()
            .map_err(|e| FieldError::io("device process", e))?;
        match exited {
            Some(status) if status.success() => {
                p.child = None;
                live.drained_at_ms
                    .store(f.start.elapsed().as_millis() as u64, Ordering::Relaxed);
                live.drained.store(true, Ordering::Relaxed);
                continue;
            }
            Some(_) => {}
            None if Instant::now() >= p.next_kill => {
                // SIGKILL: no chance to flush, close or say goodbye.
                let _ = child.kill();
                let _ = child.wait();
                live.kills.fetch_add(1, Ordering::Relaxed);
                p.next_kill = Instant::now() + kill_interval(cfg, &mut p.rng);
            }
            None => continue,
        }
        p.child = if Instant::now() < f.deadline {
            Some(spawn(exe, d, &f.urls[d.link], f.deadline, live)?)
        } else {
            None
        };
    }
    Ok(())
}

fn snapshot(
    devices: &[Device],
    lives: &[Arc<Live>],
    log: &FaultLog,
    links: &[Arc<crate::proxy::Link>],
    db: &Path,
    start: Instant,
) -> Snapshot {
    let decided = account::decided_by_device(db).unwrap_or_default();
    Snapshot {
        elapsed: start.elapsed(),
        devices: devices
            .iter()
            .map(|d| {
                let l = &lives[d.index];
                DeviceSnap {
                    captured: l.captured.load(Ordering::Relaxed),
                    sent_bytes: l.sent_bytes.load(Ordering::Relaxed),
                    counted: decided.get(&d.device_id).copied().unwrap_or(0),
                    drained: l.drained.load(Ordering::Relaxed),
                    kills: l.kills.load(Ordering::Relaxed),
                }
            })
            .collect(),
        faults: log.fault_count(),
        wire_bytes: links.iter().map(|l| l.wire_bytes()).sum(),
    }
}
