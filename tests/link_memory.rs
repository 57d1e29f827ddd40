//! Link memory across sync runs (ADR 0023): a run that follows a recent one starts its PATCHes
//! at the size the link was carrying and skips the catalog refresh; one that follows a stale
//! memory starts as a fresh run (16 KiB on a link with long round trips) and refreshes the
//! catalog. Against the real reference endpoint on loopback, through a transport that plays
//! Slow 3G on the device's manual clock (2 s per exchange, 50 kB/s up): only the device's
//! clock moves, no real time is waited and none is asserted.

mod engine_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::clock::Clock;
use apoyo_sync::testkit::sync::patch_size::{MIN, START};
use apoyo_sync::testkit::sync::transport::{Method, Request, SendFuture, Transport};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig};
use apoyo_sync::{EngineOptions, StopReason};
use engine_support::{Env, capture, fast, start};

/// Slow 3G on the device's clock: each exchange moves it 2 s, plus 20 µs per body byte.
struct SlowLink {
    inner: HttpTransport,
    clock: ManualClock,
    /// Method, path and body length of every request, in the order sent.
    log: Mutex<Vec<(Method, String, usize)>>,
}

impl Transport for SlowLink {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let len = req.body.len();
            self.log
                .lock()
                .unwrap()
                .push((req.method, req.path.clone(), len));
            let resp = self.inner.send(req, limit).await;
            let ms = 2000 + (len as i64) / 50;
            self.clock.advance(time::Duration::milliseconds(ms));
            resp
        })
    }
}

/// What the endpoint saw of one run.
struct Seen {
    catalog_gets: usize,
    /// Body lengths of the run's PATCHes, in order.
    patches: Vec<usize>,
}

impl Seen {
    /// The run's opening PATCH size: the larger of its first two PATCHes (two fly at once, on
    /// two parts; at most one of them is the short fields part).
    fn opening(&self) -> usize {
        self.patches.iter().take(2).copied().max().expect("a PATCH")
    }
}

fn seen_since(t: &SlowLink, from: usize) -> Seen {
    let log = t.log.lock().unwrap();
    let run = &log[from..];
    Seen {
        catalog_gets: run
            .iter()
            .filter(|(m, p, _)| *m == Method::Get && p.starts_with("/v1/processes"))
            .count(),
        patches: run
            .iter()
            .filter(|(m, _, _)| *m == Method::Patch)
            .map(|(_, _, n)| *n)
            .collect(),
    }
}

#[test]
fn a_run_right_after_another_starts_where_it_left_off_and_a_stale_memory_is_ignored() {
    let env: Env = start();
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let t = Arc::new(SlowLink {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        clock: clock.clone(),
        log: Mutex::new(Vec::new()),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        clock: Arc::new(clock.clone()),
        ..fast()
    };
    let e = env.activated("phone", opts);
    let mut next = 0;
    let mut run = |pause: time::Duration| {
        clock.advance(pause);
        for _ in 0..2 {
            e.capture(capture("revocacion-2022", next, 1200))
                .expect("capture");
            next += 1;
        }
        let from = t.log.lock().unwrap().len();
        let r = e.sync(Some(Duration::from_secs(3600))).expect("sync");
        assert_eq!((r.pending, r.stopped), (0, StopReason::Drained), "{r:?}");
        seen_since(&t, from)
    };

    // A first run on a link with 2 s round trips: the catalog, then 16 KiB PATCHes at first.
    let first = run(time::Duration::ZERO);
    assert_eq!(first.catalog_gets, 1);
    assert_eq!(first.opening(), MIN, "{:?}", first.patches);
    assert!(
        first.patches.iter().any(|&n| n > START),
        "the run grew its PATCHes: {:?}",
        first.patches
    );

    // Half a minute later (another `apoyo sync`): no catalog refresh, the size it ended at.
    let second = run(time::Duration::seconds(30));
    assert_eq!(
        second.catalog_gets, 0,
        "the catalog was refreshed as the first run began"
    );
    assert!(
        second.opening() >= START,
        "the second run starts at the remembered size, not at 16 KiB: {:?}",
        second.patches
    );

    // Sixteen minutes later both memories are stale: a fresh start, a catalog refresh.
    let third_start = clock.now() + time::Duration::minutes(16);
    let third = run(time::Duration::minutes(16));
    assert_eq!(third.catalog_gets, 1, "the catalog is 16 minutes old");
    assert_eq!(third.opening(), MIN, "{:?}", third.patches);

    // Ten and a half minutes later: the PATCH memory (10 minutes) is stale, the catalog (15,
    // refreshed as the third run began) is not.
    let pause = time::Duration::seconds(630);
    assert!(
        clock.now() + pause - third_start < time::Duration::minutes(15),
        "the third run took too long for this check"
    );
    let fourth = run(pause);
    assert_eq!(fourth.catalog_gets, 0);
    assert_eq!(fourth.opening(), MIN, "{:?}", fourth.patches);
}
