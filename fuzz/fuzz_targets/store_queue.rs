//! Target 6: a state machine over the store and its queue, synced against the real endpoint
//! in-process (a `RouterTransport`, behind the seeded `FaultyTransport` when lossy).
//!
//! Operations: capture (any of a few citizens, two processes), a sync run (lossy or not, any
//! budget), a crash (the store dropped and reopened), quarantine, retry, a transient failure
//! recorded, an upload forgotten, set-aside (and the set-aside store moved back), time passing.
//!
//! After every step: nothing captured is lost (every capture is listed; every unpurged one
//! still opens, every part); a purged capture has its verified receipt; the status counts and
//! the pending count agree with the list; a duplicate refusal names a live earlier capture of
//! the same citizen and a capture is accepted only without one; the endpoint counted exactly
//! the receipts that say "counted", each citizen at most once per process. At the end an
//! honest endpoint drains the queue.
#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use apoyo_fuzz::bundle::{self, CONSULTA, REVOCACION};
use apoyo_fuzz::router::{RouterTransport, call};
use apoyo_fuzz::{VirtualClock, check, paused_runtime, world};
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::sync::{FaultPlan, FaultyTransport, SyncOptions, engine};
use apoyo_sync::wire::ReceiptResult;
use apoyo_sync::{CaptureId, Error, PartKind, SharedClock, State};
use arbitrary::Arbitrary;
use axum::Router;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Capture {
        consulta: bool,
        citizen: u8,
    },
    Sync {
        seed: u64,
        lossy: bool,
        budget_secs: u16,
    },
    Crash,
    Quarantine {
        which: u8,
    },
    Retry {
        which: u8,
    },
    Transient {
        which: u8,
        secs: u16,
    },
    ResetUpload {
        which: u8,
        kind: u8,
    },
    SetAside,
    Advance {
        minutes: u16,
    },
}

struct Run {
    store: Option<Store>,
    dir: PathBuf,
    clock: SharedClock,
    router: Router,
    /// Every capture the store accepted: id → (process, citizen).
    ids: HashMap<CaptureId, (String, usize)>,
}

impl Run {
    fn store(&mut self) -> &mut Store {
        self.store.as_mut().expect("the store is open")
    }

    fn pick(&self, which: u8) -> Option<CaptureId> {
        let mut v: Vec<_> = self.ids.keys().copied().collect();
        v.sort();
        (!v.is_empty()).then(|| v[which as usize % v.len()])
    }

    fn reopen(&mut self) {
        self.store = None;
        let s = world::template().open_store(&self.dir, self.clock.clone());
        self.store = Some(
            s.unwrap_or_else(|e| panic!("invariant violated: the store does not reopen: {e}")),
        );
    }

    /// Whether another capture of `id`'s citizen in its process is live (not quarantined).
    fn live_other(&mut self, id: &CaptureId) -> bool {
        let list = self.store().list().expect("list");
        let citizen = self.ids.get(id);
        list.iter()
            .any(|c| c.id != *id && c.state != State::Quarantined && self.ids.get(&c.id) == citizen)
    }

    fn capture(&mut self, consulta: bool, citizen: u8) {
        let process = if consulta { CONSULTA } else { REVOCACION };
        let citizen = citizen as usize % 5;
        let live_same: Vec<CaptureId> = {
            let list = self.store().list().expect("list");
            list.iter()
                .filter(|c| {
                    c.state != State::Quarantined
                        && self.ids.get(&c.id) == Some(&(process.to_string(), citizen))
                })
                .map(|c| c.id)
                .collect()
        };
        // Captures 0 and 1 of the template are citizens 0 and 1 of the national process.
        match self.store().capture(bundle::new_capture(process, citizen)) {
            Ok(id) => {
                check!(
                    live_same.is_empty(),
                    "citizen {citizen} captured twice for {process}"
                );
                self.ids.insert(id, (process.to_string(), citizen));
            }
            Err(Error::Duplicate { earlier, .. }) => {
                check!(
                    live_same.iter().any(|id| id.to_string() == earlier),
                    "duplicate names {earlier}, live: {live_same:?}"
                );
            }
            Err(e) => panic!("invariant violated: a valid capture refused: {e}"),
        }
    }

    async fn sync(&mut self, seed: u64, lossy: bool, budget: Duration) {
        let plan = if lossy {
            FaultPlan::lossy()
        } else {
            FaultPlan {
                drop_request: 0.0,
                lose_response: 0.0,
                cut_upload: 0.0,
            }
        };
        let transport = FaultyTransport::new(
            RouterTransport {
                router: self.router.clone(),
            },
            plan,
            seed,
        );
        let opts = SyncOptions {
            budget,
            seed: Some(seed),
            ..SyncOptions::default()
        };
        let r = engine::run(self.store(), &transport, opts).await;
        check!(r.is_ok(), "a sync run failed: {r:?}");
    }

    fn set_aside(&mut self) {
        let before = self.store().list().expect("list");
        self.store = None;
        let target = Store::set_aside(&self.dir)
            .unwrap_or_else(|e| panic!("invariant violated: set-aside failed: {e}"));
        check!(
            target.join("apoyo.db").is_file(),
            "set-aside lost the database"
        );
        for c in &before {
            if c.state != State::Purged {
                check!(
                    target
                        .join("parts")
                        .join(format!("{}.parts", c.id))
                        .is_file(),
                    "set-aside lost a part file"
                );
            }
        }
        // Moved back, the store opens to the same queue.
        for e in std::fs::read_dir(&target)
            .expect("set-aside folder")
            .flatten()
        {
            std::fs::rename(e.path(), self.dir.join(e.file_name())).expect("move back");
        }
        std::fs::remove_dir(&target).expect("empty set-aside folder");
        self.reopen();
        check!(
            self.store().list().expect("list") == before,
            "the queue changed through set-aside"
        );
    }

    async fn step(&mut self, op: Op) {
        match op {
            Op::Capture { consulta, citizen } => self.capture(consulta, citizen),
            Op::Sync {
                seed,
                lossy,
                budget_secs,
            } => {
                self.sync(
                    seed,
                    lossy,
                    Duration::from_secs(u64::from(budget_secs % 1800)),
                )
                .await
            }
            Op::Crash => self.reopen(),
            Op::Quarantine { which } => {
                if let Some(id) = self.pick(which) {
                    self.store().quarantine(&id, "fuzz").expect("quarantine");
                }
            }
            Op::Retry { which } => {
                if let Some(id) = self.pick(which) {
                    let quarantined =
                        self.store().info(&id).expect("info").state == State::Quarantined;
                    // A retry must not make a second live capture of one citizen (issue 17).
                    let live_other = self.live_other(&id);
                    match self.store().retry_quarantined(&id) {
                        Ok(()) => check!(
                            quarantined && !live_other,
                            "retried into a second live capture (quarantined: {quarantined})"
                        ),
                        Err(Error::Duplicate { .. }) => check!(
                            quarantined && live_other,
                            "a retry refused as a duplicate with no live capture of the citizen"
                        ),
                        Err(e) => check!(!quarantined, "retry of a quarantined capture: {e}"),
                    }
                }
            }
            Op::Transient { which, secs } => {
                if let Some(id) = self.pick(which) {
                    // Within the run (a transient delay is at most minutes, and Retry-After at most an
                    // hour): the final drain must be able to reach it.
                    let at = self.clock.now() + time::Duration::seconds(i64::from(secs % 600));
                    self.store()
                        .record_transient(&id, at, "fuzz")
                        .expect("transient");
                }
            }
            Op::ResetUpload { which, kind } => {
                if let Some(id) = self.pick(which) {
                    self.store()
                        .reset_upload(&id, PartKind::ALL[kind as usize % 5])
                        .expect("reset");
                }
            }
            Op::SetAside => self.set_aside(),
            Op::Advance { minutes } => {
                tokio::time::advance(Duration::from_secs(u64::from(minutes % 240) * 60)).await
            }
        }
        self.invariants().await;
    }

    async fn invariants(&mut self) {
        let ids = self.ids.clone();
        let store = self.store();
        let list = store.list().expect("list");
        check!(
            list.len() == ids.len() && list.iter().all(|c| ids.contains_key(&c.id)),
            "the queue lost or gained captures"
        );
        let receipts = store.receipts().expect("receipts");
        let status = store.status().expect("status");
        let count = |s: State| list.iter().filter(|c| c.state == s).count() as u64;
        check!(
            status.captured == count(State::Captured)
                && status.uploading == count(State::Uploading)
                && status.committed == count(State::Committed)
                && status.quarantined == count(State::Quarantined)
                && status.purged == count(State::Purged),
            "status {status:?} disagrees with the list"
        );
        check!(
            store.pending_count().expect("pending") == status.captured + status.uploading,
            "pending count"
        );
        for c in &list {
            if matches!(c.state, State::Purged | State::Committed) {
                check!(
                    receipts.iter().any(|r| r.capture_id == c.id && r.verified),
                    "capture {} {:?} without its verified receipt",
                    c.id,
                    c.state
                );
            } else {
                for kind in PartKind::ALL {
                    let r = store.read_part(&c.id, kind, &mut std::io::sink());
                    check!(
                        r.is_ok(),
                        "capture {} lost its {} part: {r:?}",
                        c.id,
                        kind.name()
                    );
                }
            }
        }
        // The endpoint counted exactly the receipts that say so, each citizen once.
        let counted: Vec<&(String, usize)> = receipts
            .iter()
            .filter(|r| r.result == ReceiptResult::Counted)
            .filter_map(|r| ids.get(&r.capture_id))
            .collect();
        let mut distinct = counted.clone();
        distinct.sort();
        distinct.dedup();
        check!(
            distinct.len() == counted.len(),
            "a citizen counted twice: {counted:?}"
        );
        let a = call(
            &self.router,
            axum::http::Method::GET,
            "/v1/admin/stats",
            &[],
            Vec::new(),
            None,
        )
        .await
        .expect("stats");
        let stats: apoyo_endpoint::Stats = serde_json::from_slice(&a.body).expect("stats JSON");
        // Mid-run the endpoint may have counted a support whose answer was lost (the device
        // gets the same receipt on its next try): never fewer, and equal once drained.
        let drained = list.iter().all(|c| c.state == State::Purged);
        check!(
            stats.counted as usize >= counted.len()
                && (!drained || stats.counted as usize == counted.len()),
            "endpoint counted {}, receipts say {}",
            stats.counted,
            counted.len()
        );
    }
}

fuzz_target!(|ops: Vec<Op>| {
    if ops.len() > 24 {
        return;
    }
    let t = world::template();
    let dir = apoyo_fuzz::tempdir();
    paused_runtime().block_on(async {
        let clock = VirtualClock::new(t.t0).shared();
        let (_state, router) = t.endpoint(dir.path(), clock.clone());
        let store = t.store(dir.path(), clock.clone());
        let ids = t
            .store_captures
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, (REVOCACION.to_string(), i)))
            .collect();
        let mut run = Run {
            store: Some(store),
            dir: dir.path().join("store"),
            clock,
            router,
            ids,
        };
        let start = tokio::time::Instant::now();
        for op in ops {
            // The activation lives 24 h; leave room for the final drain.
            if start.elapsed() > Duration::from_secs(18 * 3600) {
                break;
            }
            run.step(op).await;
        }
        // An honest endpoint drains everything, once quarantined captures are retried.
        tokio::time::advance(Duration::from_secs(3600)).await;
        for c in run.store().list().expect("list") {
            if c.state == State::Quarantined {
                // Refused as a duplicate when the citizen has a live capture: it stays.
                match run.store().retry_quarantined(&c.id) {
                    Ok(()) | Err(Error::Duplicate { .. }) => {}
                    Err(e) => panic!("retry: {e:?}"),
                }
            }
        }
        run.sync(0, false, Duration::from_secs(3600)).await;
        run.invariants().await;
        let left: Vec<_> = run
            .store()
            .list()
            .expect("list")
            .into_iter()
            .filter(|c| {
                c.state != State::Purged
                    && !(c.state == State::Quarantined && run.live_other(&c.id))
            })
            .collect();
        check!(
            left.is_empty(),
            "an honest endpoint left captures undelivered: {left:?}"
        );
    });
});
