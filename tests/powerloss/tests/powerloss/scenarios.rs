//! The crash-at-every-sync-point suites. Each first runs its scenario once without a crash to
//! count the sync points it passes (N), then, for every seed, once crashed at each of them and
//! once with the power cut after it returned (N + 1 runs a seed), checking after each.

use apoyo_powerloss::Losses;
use apoyo_sync::State;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::model::{CaptureId, Images};

use crate::device::{Captured, Device, check_after_power_loss, check_integrity};
use crate::network::{Endpoint, sync};
use crate::support::{Power, capture, fate_seed, points, replay, seeds};

/// What one run passed before the power went out.
struct Ran {
    syncs: u64,
    crashed: bool,
    losses: Losses,
    /// What each sync point synced (`sync <file>`, `sync dir <folder>/`).
    log: Vec<String>,
}

impl Ran {
    /// Ends a run: notes where the power went out, then cuts it.
    fn cut<E: std::fmt::Display>(power: Power, result: Result<(), E>, ctx: &str) -> Ran {
        let syncs = power.disk.syncs();
        let crashed = power.disk.crashed();
        if let Err(e) = result {
            assert!(crashed, "{ctx}: failed without a power loss: {e}");
        }
        let log = power.disk.log();
        let losses = power.cut();
        if std::env::var_os("APOYO_POWERLOSS_POINT").is_some() {
            eprintln!(
                "{ctx}\nsync points passed: {log:#?}\nunsynced writes at the power loss: {losses:?}"
            );
        }
        Ran {
            syncs,
            crashed,
            losses,
            log,
        }
    }
}

/// Runs `run(fates, crash_at, ctx)` at every sync point and after the end, for every seed.
/// The dry run must pass a sync point starting with each of `must_sync` (so the store's I/O
/// really reaches the fault layers: a part file written around `store::part_fs` would count
/// as always durable and the suite would lose its teeth).
fn every_point(test: &str, must_sync: &[&str], mut run: impl FnMut(u64, Option<u64>, &str) -> Ran) {
    let dry = run(0, None, &format!("{test}: dry run"));
    assert!(!dry.crashed);
    let n = dry.syncs;
    assert!(n > 0, "{test}: no sync point at all");
    for want in must_sync {
        assert!(
            dry.log.iter().any(|l| l.starts_with(want)),
            "{test}: no sync point starts with {want:?}; the dry run synced {:#?}",
            dry.log
        );
    }
    let (mut runs, mut losses) = (0u64, Losses::default());
    let seeds = seeds();
    for &seed in &seeds {
        for point in points(n + 1) {
            let crash_at = (point <= n).then_some(point);
            let ctx = format!(
                "{test}: seed {seed}, power lost at sync point {point} of {n}{} (replay: {})",
                if point > n { " (after the end)" } else { "" },
                replay(test, seed, point)
            );
            let ran = run(fate_seed(seed, point), crash_at, &ctx);
            if crash_at.is_some() {
                assert!(
                    ran.crashed,
                    "{ctx}: the run passed fewer sync points than the dry run: {:#?} against {:#?}",
                    ran.log, dry.log
                );
            }
            runs += 1;
            losses.kept += ran.losses.kept;
            losses.dropped += ran.losses.dropped;
            losses.torn += ran.losses.torn;
            losses.garbage += ran.losses.garbage;
            losses.entries_undone += ran.losses.entries_undone;
        }
    }
    eprintln!(
        "{test}: {n} sync points + 1 after the end x {} seeds = {runs} power losses; unsynced writes kept {}, dropped {}, torn {}, garbage {}; entries undone {}",
        seeds.len(),
        losses.kept,
        losses.dropped,
        losses.torn,
        losses.garbage,
        losses.entries_undone
    );
}

#[test]
fn power_loss_at_every_sync_point_of_a_capture() {
    let device = Device::new(None);
    every_point(
        "power_loss_at_every_sync_point_of_a_capture",
        &["sync parts/", "sync dir parts/", "sync apoyo.db"],
        |fates, crash_at, ctx| {
            let run = device.fresh_run();
            let power = Power::on(&run, fates, crash_at);
            let mut captured = Captured::default();
            let result = (|| -> apoyo_sync::Result<()> {
                let mut store = device.open()?;
                for i in 0..3 {
                    let c = capture("nacional", i);
                    captured.in_flight = Some(c.images.clone());
                    let id = store.capture(c)?;
                    let images = captured.in_flight.take().expect("in flight");
                    captured.returned.push((id, images));
                }
                Ok(())
            })();
            let ran = Ran::cut(power, result, ctx);
            drop(check_after_power_loss(&device, &captured, ctx));
            check_integrity(&device, ctx);
            ran
        },
    );
}

/// A device enrolled with a running endpoint, holding `n` captures, both kept as templates.
fn enrolled_world(n: u32) -> (Endpoint, Device, Vec<(CaptureId, Images)>) {
    let mut ep = Endpoint::new();
    let device = Device::new(Some(ep.provisioning()));
    device.fresh_run();
    ep.enroll(&device);
    let mut held = Vec::new();
    {
        let mut store = device.open().expect("open");
        for i in 0..n {
            let c = capture("nacional", 100 + i);
            let images = c.images.clone();
            held.push((store.capture(c).expect("capture"), images));
        }
    }
    device.keep_run_as_template();
    ep.keep_run_as_template();
    (ep, device, held)
}

/// After the power loss and the restart: each capture is still held whole (checked by
/// [`check_after_power_loss`]) or purged and counted by the endpoint; a last sync drains the
/// queue, and then every capture is counted once, purged, and its part file gone.
fn check_delivery(ep: &Endpoint, device: &Device, held: &[(CaptureId, Images)], ctx: &str) {
    let captured = Captured {
        returned: held.to_vec(),
        in_flight: None,
    };
    let mut store = check_after_power_loss(device, &captured, ctx);
    let ids: Vec<String> = held.iter().map(|(id, _)| id.to_string()).collect();
    let results = ep.results(&ids);
    for (info, result) in list_of(&store, held).iter().zip(&results) {
        if *info == State::Purged {
            assert_eq!(
                result.as_deref(),
                Some("counted"),
                "{ctx}: purged on the device but not counted by the endpoint"
            );
        }
    }
    let report = sync(&mut store, ep, None).unwrap_or_else(|e| panic!("{ctx}: drain: {e}"));
    assert_eq!(report.pending, 0, "{ctx}: drain left captures pending");
    for state in list_of(&store, held) {
        assert_eq!(state, State::Purged, "{ctx}: not purged after the drain");
    }
    for result in ep.results(&ids) {
        assert_eq!(result.as_deref(), Some("counted"), "{ctx}: not counted");
    }
    assert!(
        std::fs::read_dir(device.run().join("parts"))
            .expect("parts")
            .next()
            .is_none(),
        "{ctx}: part files left after every capture was purged"
    );
    drop(store);
    check_integrity(device, ctx);
}

fn list_of(store: &Store, held: &[(CaptureId, Images)]) -> Vec<State> {
    let list = store.list().expect("list");
    held.iter()
        .map(|(id, _)| list.iter().find(|c| c.id == *id).expect("listed").state)
        .collect()
}

#[test]
fn power_loss_at_every_sync_point_of_a_sync_and_its_purge() {
    let (mut ep, device, held) = enrolled_world(1);
    every_point(
        "power_loss_at_every_sync_point_of_a_sync_and_its_purge",
        &["sync dir parts/", "sync apoyo.db"],
        |fates, crash_at, ctx| {
            ep.fresh_run();
            ep.start();
            let run = device.fresh_run();
            let power = Power::on(&run, fates, crash_at);
            let disk = power.disk.clone();
            let result = (|| -> apoyo_sync::Result<()> {
                let mut store = device.open()?;
                sync(&mut store, &ep, Some(disk)).map(drop)
            })();
            let ran = Ran::cut(power, result, ctx);
            check_delivery(&ep, &device, &held, ctx);
            ran
        },
    );
}

#[test]
fn power_loss_at_every_sync_point_of_the_endpoint_commit() {
    let (mut ep, device, held) = enrolled_world(1);
    every_point(
        "power_loss_at_every_sync_point_of_the_endpoint_commit",
        &[],
        |fates, crash_at, ctx| {
            ep.fresh_run();
            let power = Power::on(&ep.run(), fates, crash_at);
            let disk = power.disk.clone();
            ep.start();
            device.fresh_run();
            let result = (|| -> apoyo_sync::Result<()> {
                let mut store = device.open()?;
                sync(&mut store, &ep, Some(disk)).map(drop)
            })();
            // The endpoint dies with its power; it restarts on what its disk kept.
            ep.stop();
            let ran = Ran::cut(power, Ok::<(), String>(()), ctx);
            if let Err(e) = result {
                panic!("{ctx}: the device's run failed: {e}");
            }
            assert_eq!(ep.integrity(), "ok", "{ctx}: endpoint integrity_check");
            ep.start();
            check_delivery(&ep, &device, &held, ctx);
            ran
        },
    );
}

#[test]
fn power_loss_at_every_sync_point_of_a_migration() {
    let device = Device::new(None);
    let held = crate::migration::store_at_version_1(&device);
    every_point(
        "power_loss_at_every_sync_point_of_a_migration",
        &["sync apoyo.db"],
        |fates, crash_at, ctx| {
            let run = device.fresh_run();
            let power = Power::on(&run, fates, crash_at);
            let result = device.open().map(drop);
            let ran = Ran::cut(power, result, ctx);
            let captured = Captured {
                returned: held.clone(),
                in_flight: None,
            };
            let store = check_after_power_loss(&device, &captured, ctx);
            drop(store);
            check_integrity(&device, ctx);
            let version: i64 = rusqlite::Connection::open(run.join("apoyo.db"))
                .expect("open")
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("version");
            assert_eq!(
                version,
                apoyo_sync::testkit::store::migrations::LATEST,
                "{ctx}: not migrated after the restart"
            );
            ran
        },
    );
}
