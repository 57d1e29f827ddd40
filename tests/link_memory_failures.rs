//! A run whose link failed after its last acknowledged PATCH and that then ran to the end of
//! its budget hands on those failures (ADR 0023): the next run opens small on a link that just
//! failed, not at the size of before the failures (found by review). Real endpoint on
//! loopback; the transport plays a prompt link on the device's manual clock, then a link that
//! cuts every PATCH after 3 s.

mod engine_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::sync::patch_size::{MIN, START};
use apoyo_sync::testkit::sync::transport::{
    Method, Request, SendFuture, Transport, TransportError,
};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig};
use apoyo_sync::{EngineOptions, StopReason};
use engine_support::{Env, capture, fast, start};

struct Link {
    inner: HttpTransport,
    clock: ManualClock,
    /// PATCHes still carried before the link starts cutting them (when `cutting`).
    ok_patches: AtomicUsize,
    cutting: AtomicBool,
    /// Body lengths of the PATCHes sent, in order, and whether each was cut.
    patches: Mutex<Vec<(usize, bool)>>,
}

impl Transport for Link {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let len = req.body.len();
            if req.method == Method::Patch {
                let cut = self.cutting.load(Ordering::SeqCst)
                    && self
                        .ok_patches
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_err();
                self.patches.lock().unwrap().push((len, cut));
                if cut {
                    // Answered after the PATCHes already in flight (loopback), as a cut
                    // seconds later would be.
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    self.clock.advance(time::Duration::seconds(3));
                    return Err(TransportError::Broken("connection reset".into()));
                }
            }
            let resp = self.inner.send(req, limit).await;
            // A prompt link: 100 ms per exchange plus 1 ms per 2 kB.
            self.clock
                .advance(time::Duration::milliseconds(100 + (len as i64) / 2000));
            resp
        })
    }
}

#[test]
fn failures_after_the_last_ack_in_a_run_that_ran_out_of_budget_are_handed_on() {
    let env: Env = start();
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let t = Arc::new(Link {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        clock: clock.clone(),
        ok_patches: AtomicUsize::new(12),
        cutting: AtomicBool::new(true),
        patches: Mutex::new(Vec::new()),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        clock: Arc::new(clock.clone()),
        ..fast()
    };
    let e = env.activated("phone", opts);
    for i in 0..4 {
        e.capture(capture("revocacion-2022", i, 1200))
            .expect("capture");
    }
    // Run 1: twelve PATCHes carried, then every PATCH is cut (a genuine link failure, 3 s each);
    // the captures keep retrying (short backoff) until the 60 s budget ends.
    let r = e.sync(Some(Duration::from_secs(60))).expect("sync");
    let first: Vec<(usize, bool)> = t.patches.lock().unwrap().clone();
    let cuts = first.iter().filter(|(_, c)| *c).count();
    let largest_ok = first
        .iter()
        .filter(|(_, c)| !c)
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0);
    assert_eq!(r.stopped, StopReason::Budget, "{r:?}");
    assert!(cuts >= 4, "the link cut PATCHes in run 1: {first:?}");
    assert!(
        largest_ok >= START,
        "run 1 carried large PATCHes first: {first:?}"
    );

    // Run 2, 30 s later (the link carries again: what matters is the size it opens at).
    t.cutting.store(false, Ordering::SeqCst);
    clock.advance(time::Duration::seconds(30));
    let from = t.patches.lock().unwrap().len();
    let _ = e.sync(Some(Duration::from_secs(20))).expect("sync");
    let second: Vec<usize> = t.patches.lock().unwrap()[from..]
        .iter()
        .map(|(n, _)| *n)
        .collect();
    // Its first four PATCHes: a resumed run keeps a failure's ceiling until PATCHes succeed.
    let opening = second.iter().take(4).copied().max().expect("a PATCH");
    // Run 1's last {cuts} PATCHes were cut by the link (each failure quarters the size and
    // sets a ceiling, ADR 0018); none was acknowledged after them. What is handed on should
    // carry them: the next run opens small, not at the size of before the failures.
    assert!(
        opening <= MIN,
        "run 2 opened with {opening}-byte PATCHes after {cuts} link failures ending run 1 \
         (run 1 PATCHes, cut or not: {first:?}; run 2: {second:?})"
    );
}
