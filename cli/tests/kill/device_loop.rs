//! The device kill loop: one `apoyo sync` process after another, each SIGKILLed at a moment
//! aimed at a phase (an upload moving, a commit recorded by the endpoint, a receipt recorded
//! on the device, or a random delay), against one `apoyo serve` that stays up. Each kill is
//! classified by what it left on disk and checked before the next process starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use super::check::{self, Phase};
use super::view::{DeviceView, EndpointView, Probe};
use super::world::{Device, PATIENCE, World, sigkill, wait_bounded};
use crate::common::{KillOnDrop, Rng};

/// What a round aims its kill at.
#[derive(Debug, Clone, Copy)]
enum Aim {
    /// After the `n`-th observed move of the endpoint's uploads (a create or a PATCH).
    Upload(u64),
    /// As soon as the endpoint records a new support.
    Commit,
    /// As soon as the device records a new receipt.
    Purge,
    /// After a random delay, in ms.
    Delay(u64),
}

/// Figures of a device kill loop.
#[derive(Debug, Default)]
pub struct DeviceFigures {
    pub seed: u64,
    pub kills: usize,
    pub by_phase: BTreeMap<Phase, usize>,
    pub runs_ended_by_themselves: usize,
    pub captures: usize,
    pub counted: u64,
    pub lost: usize,
    pub doubled: u64,
    pub seconds: f64,
}

pub fn run(kills: usize) -> DeviceFigures {
    let started = Instant::now();
    let (mut rng, seed) = Rng::from_env_or_clock("APOYO_KILL_SEED");
    eprintln!(
        "device kill loop: {kills} kills, seed {seed} \
         (APOYO_KILL_SEED={seed} APOYO_KILL_DEVICE={kills} replays the aims)"
    );
    let mut w = World::new();
    let d = Device::new(&w, "phone");
    let log = w.path("device-sync.log");
    // Bounded: a kill round takes well under a few seconds on a loaded machine.
    let deadline = started + PATIENCE + Duration::from_secs(10) * kills as u32;
    let mut f = DeviceFigures {
        seed,
        ..Default::default()
    };
    let mut known = BTreeSet::new();
    let mut round = 0usize;
    while f.kills < kills {
        assert!(Instant::now() < deadline, "{kills} kills not done in time");
        round += 1;
        w.assert_endpoint_alive();
        let at = format!("round {round} (seed {seed})");
        let Some((aim, phase)) = one_round(&w, &d, &log, &mut rng, round, &mut known, &at) else {
            f.runs_ended_by_themselves += 1;
            continue;
        };
        f.kills += 1;
        *f.by_phase.entry(phase).or_default() += 1;
        eprintln!("kill {:3}: aimed {aim:?}, landed {}", f.kills, phase.name());
    }
    drain(&d, &log);
    let fin = check::exactly_once(&w, &[&d], &known);
    f.captures = fin.captures;
    f.counted = fin.counted;
    f.lost = fin.lost;
    f.doubled = fin.doubled;
    f.seconds = started.elapsed().as_secs_f64();
    f
}

/// One round: tops the queue up, runs `apoyo sync`, kills it at an aim (they take turns, so
/// a short run tries each phase; their settings are drawn), then checks and classifies what
/// the kill left. `None` if the run drained its queue and ended by itself first.
fn one_round(
    w: &World,
    d: &Device,
    log: &Path,
    rng: &mut Rng,
    round: usize,
    known: &mut BTreeSet<String>,
    at: &str,
) -> Option<(Aim, Phase)> {
    if DeviceView::read(&d.store).pending() < 2 {
        d.add_captures(rng.range(2, 4) as usize);
    }
    let dev_before = DeviceView::read(&d.store);
    let ep_before = EndpointView::read(&w.endpoint_db());
    let aim = match round % 4 {
        0 => Aim::Upload(rng.range(1, 12)),
        1 => Aim::Commit,
        2 => Aim::Purge,
        _ => Aim::Delay(rng.range(5, 700)),
    };
    let mut child = d.spawn_sync("60s", log);
    if !aim_and_kill(&mut child, aim, d, w) {
        let status = wait_bounded(&mut child, PATIENCE, "apoyo sync");
        assert!(
            status.success(),
            "{at}: sync failed ({status}); see {}",
            log.display()
        );
        return None;
    }
    let dev = DeviceView::read(&d.store);
    let ep = EndpointView::read(&w.endpoint_db());
    check::after_kill(known, &dev, &ep_before, &ep, &format!("{at}, {aim:?}"));
    Some((aim, check::classify(&dev_before, &ep_before, &dev, &ep)))
}

/// Polls the probes every millisecond until the aim is met, then SIGKILLs the sync process.
/// Returns false if the process ended by itself first (its queue drained).
fn aim_and_kill(child: &mut KillOnDrop, aim: Aim, d: &Device, w: &World) -> bool {
    let probe = Probe::new(&d.store, &w.endpoint_db());
    let start = Instant::now();
    let upload0 = probe.upload_mark();
    let supports0 = probe.supports();
    let receipted0 = probe.receipted().1;
    let mut moves = 0;
    let mut last_mark = upload0;
    loop {
        if child.0.try_wait().expect("try_wait").is_some() {
            return false;
        }
        let hit = match aim {
            Aim::Upload(n) => {
                let mark = probe.upload_mark();
                if mark != last_mark {
                    moves += 1;
                    last_mark = mark;
                }
                moves >= n
            }
            Aim::Commit => probe.supports() > supports0,
            Aim::Purge => {
                let (committed, receipted) = probe.receipted();
                receipted > receipted0 && committed > 0
            }
            Aim::Delay(ms) => start.elapsed() >= Duration::from_millis(ms),
        };
        // A sync that never reaches the aim (say, its queue ends first) is killed all the
        // same after a while: the kill still lands somewhere and is classified.
        if hit || start.elapsed() > Duration::from_secs(20) {
            return sigkill(child);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Syncs until nothing is pending (a healthy run drains the queue at once).
fn drain(d: &Device, log: &Path) {
    for _ in 0..5 {
        let mut child = d.spawn_sync("120s", log);
        let mut out = String::new();
        let status = wait_bounded(&mut child, PATIENCE * 2, "the final sync");
        use std::io::Read;
        child
            .0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("report");
        assert!(
            status.success(),
            "the final sync failed ({status}): see {}",
            log.display()
        );
        let report: serde_json::Value = serde_json::from_str(out.trim()).expect("report JSON");
        if report["pending"] == 0 {
            return;
        }
    }
    panic!("captures still pending after five final syncs");
}
