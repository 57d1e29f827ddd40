//! The endpoint kill loop: two devices sync their queues back to back (one `apoyo sync` after
//! another, each on a thread of its own) while the `apoyo serve` endpoint is SIGKILLed
//! mid-request, again and again, and restarted on the same database and port. A kill is aimed
//! just after the endpoint recorded a write from a device's request (an upload created or
//! moved, a support recorded), when the device's next request is on its way. The database's
//! `PRAGMA integrity_check` must be ok after every kill and after every restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::check;
use super::view::{self, EndpointView};
use super::world::{Device, PATIENCE, World, wait_bounded};
use crate::common::Rng;

/// Figures of an endpoint kill loop.
#[derive(Debug, Default)]
pub struct EndpointFigures {
    pub seed: u64,
    pub kills: usize,
    /// Kills aimed just after any write of a device's request (an upload created or moved, a
    /// support recorded).
    pub after_write: usize,
    /// Kills aimed just after a capture's last part arrived, when its commit is on its way.
    pub after_last_part: usize,
    /// Kills that visibly cut a request: an upload file holding more bytes than its row
    /// records (a PATCH written, not recorded), or an upload file without a row (a create).
    pub visibly_cut: usize,
    pub integrity_checks: usize,
    pub sync_runs: u64,
    pub retries: u64,
    pub captures: usize,
    pub counted: u64,
    pub lost: usize,
    pub doubled: u64,
    pub seconds: f64,
}

/// What a device supervisor saw: sync runs, retries, and every capture id the device held
/// right after it was captured (read before any sync could purge it).
type Supervised = (u64, u64, BTreeSet<String>);

/// A device's supervisor: runs `apoyo sync` until `stop` is set and the queue is drained,
/// adding a few captures whenever it drains before then.
fn supervise(d: Arc<Device>, log: std::path::PathBuf, stop: Arc<AtomicBool>) -> Supervised {
    let (mut runs, mut retries) = (0, 0);
    let mut known: BTreeSet<String> = view::DeviceView::read(&d.store)
        .states
        .into_keys()
        .collect();
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < PATIENCE * 3,
                "the queue did not drain once the kills ended"
            );
        }
        let mut child = d.spawn_sync("15s", &log);
        let status = wait_bounded(&mut child, PATIENCE, "apoyo sync");
        let mut out = String::new();
        use std::io::Read;
        let _ = child
            .0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out);
        assert!(
            status.success(),
            "sync failed ({status}); see {}",
            log.display()
        );
        let report: serde_json::Value = serde_json::from_str(out.trim()).expect("report JSON");
        runs += 1;
        retries += report["retries"].as_u64().unwrap_or(0);
        if report["pending"] == 0 {
            if stop.load(Ordering::SeqCst) {
                return (runs, retries, known);
            }
            d.add_captures(3);
            known.extend(view::DeviceView::read(&d.store).states.into_keys());
        }
    }
}

pub fn run(kills: usize) -> EndpointFigures {
    let started = Instant::now();
    let (mut rng, seed) = Rng::from_env_or_clock("APOYO_KILL_SEED");
    eprintln!(
        "endpoint kill loop: {kills} kills, seed {seed} \
         (APOYO_KILL_SEED={seed} APOYO_KILL_ENDPOINT={kills} replays the aims)"
    );
    let mut w = World::new();
    let devices: Vec<Arc<Device>> = ["phone-a", "phone-b"]
        .iter()
        .map(|n| Arc::new(Device::new(&w, n)))
        .collect();
    for d in &devices {
        d.add_captures(4);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_supervisors(&w, &devices, &stop);
    let mut f = EndpointFigures {
        seed,
        ..Default::default()
    };
    let deadline = started + PATIENCE + Duration::from_secs(15) * kills as u32;
    while f.kills < kills {
        assert!(
            Instant::now() < deadline,
            "{kills} endpoint kills not done in time"
        );
        assert!(
            workers.iter().all(|h| !h.is_finished()),
            "a device supervisor stopped (a sync failed); see sync-*.log"
        );
        // The aims take turns: any write, then a capture's last part.
        let last_part = f.kills % 2 == 1;
        if kill_at_a_request(&mut w, &mut rng, &mut f, last_part) && f.kills.is_multiple_of(20) {
            eprintln!("{} endpoint kills", f.kills);
        }
    }
    stop.store(true, Ordering::SeqCst);
    // Every capture id seen right after it was made: one missing from the final view was lost.
    let mut known = BTreeSet::new();
    for h in workers {
        let (runs, retries, seen) = h.join().expect("a device supervisor panicked");
        f.sync_runs += runs;
        f.retries += retries;
        known.extend(seen);
    }
    let refs: Vec<&Device> = devices.iter().map(|d| d.as_ref()).collect();
    let fin = check::exactly_once(&w, &refs, &known);
    f.captures = fin.captures;
    f.counted = fin.counted;
    f.lost = fin.lost;
    f.doubled = fin.doubled;
    f.seconds = started.elapsed().as_secs_f64();
    f
}

/// A thread per device running [`supervise`].
fn spawn_supervisors(
    w: &World,
    devices: &[Arc<Device>],
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Supervised>> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (d, stop) = (d.clone(), stop.clone());
            let log = w.path(&format!("sync-{i}.log"));
            std::thread::spawn(move || supervise(d, log, stop))
        })
        .collect()
}

/// Waits for a device's request (see [`wait_for_write`]), SIGKILLs the endpoint at once or a
/// few ms later, checks its database, restarts it and checks again. False if no request came.
fn kill_at_a_request(
    w: &mut World,
    rng: &mut Rng,
    f: &mut EndpointFigures,
    last_part: bool,
) -> bool {
    let db = w.endpoint_db();
    let before = EndpointView::read(&db);
    let cut_before = cut_uploads(w, &before);
    if !wait_for_write(w, last_part) {
        return false;
    }
    // At once half the time (inside the request whose write was just seen), else up to 8 ms
    // later (its answer, or the next request).
    let delay = if rng.range(0, 1) == 0 {
        0
    } else {
        rng.range(0, 8_000)
    };
    std::thread::sleep(Duration::from_micros(delay));
    w.kill_endpoint();
    f.kills += 1;
    if last_part {
        f.after_last_part += 1
    } else {
        f.after_write += 1
    }
    let after = EndpointView::read(&db);
    // A lower bound: a cut that left no bytes behind, or one seen before the kill, is not
    // counted.
    if !cut_uploads(w, &after).is_subset(&cut_before) {
        f.visibly_cut += 1;
    }
    assert_integrity(w, "after a kill");
    endpoint_only_checks(&before, &after, f.kills);
    w.start_endpoint();
    assert_integrity(w, "after a restart");
    f.integrity_checks += 2;
    true
}

/// Waits (at most 30 s) for the endpoint to record a device's write (or, with `last_part`, to
/// hold every part of a capture not yet committed); false if nothing came (devices backing
/// off, or done).
fn wait_for_write(w: &World, last_part: bool) -> bool {
    let probe = view::open_ro(&w.endpoint_db());
    let mark = |c: &rusqlite::Connection| -> (i64, i64) {
        c.query_row(
            "SELECT (SELECT count(*) FROM supports), \
                    (SELECT coalesce(sum(upload_offset), 0) + count(*) FROM uploads)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("marks")
    };
    let complete = |c: &rusqlite::Connection| -> BTreeSet<String> {
        let mut st = c
            .prepare(
                "SELECT capture_id FROM uploads GROUP BY capture_id \
                 HAVING count(*) >= 5 AND sum(upload_offset = length) = count(*)",
            )
            .expect("prepare");
        st.query_map([], |r| r.get(0))
            .expect("complete uploads")
            .map(|r| r.expect("row"))
            .collect()
    };
    let (start, complete0) = (mark(&probe), complete(&probe));
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let hit = if last_part {
            !complete(&probe).is_subset(&complete0)
        } else {
            mark(&probe) != start
        };
        if hit {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

/// Upload files holding more bytes than their row records (a PATCH written, not recorded) or
/// with no row (an upload being created): (upload id, file length).
fn cut_uploads(w: &World, view: &EndpointView) -> BTreeSet<(String, i64)> {
    let dir = w.path("endpoint.db.blobs").join("uploads");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let len = e.metadata().map(|m| m.len() as i64).unwrap_or(0);
            let cut = match view.uploads.get(&name) {
                None => true,
                Some((_, offset, _)) => len > *offset,
            };
            cut.then_some((name, len))
        })
        .collect()
}

fn assert_integrity(w: &World, when: &str) {
    let result = view::integrity(&w.endpoint_db());
    assert_eq!(result, "ok", "endpoint integrity_check {when}");
}

/// What a kill of the endpoint may never do: lose a support, or count one twice.
fn endpoint_only_checks(before: &EndpointView, after: &EndpointView, kill: usize) {
    for id in before.supports.keys() {
        assert!(
            after.supports.contains_key(id),
            "kill {kill}: support {id} vanished"
        );
    }
    for (id, result) in &after.supports {
        assert_eq!(result, "counted", "kill {kill}: support {id}");
    }
}
