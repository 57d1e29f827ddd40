//! An answered refusal is acted on even with less than a round trip of the run left (ADR
//! 0022, amendment; found by review): a permanent refusal (422 process_closed) answered at the
//! end of every short run (2 s round trips, 3.5 s budgets) quarantines the capture, instead
//! of being taken as out-of-time forever while it blocks the queue. Real endpoint on
//! loopback; the transport plays 2 s per exchange on the device's manual clock and answers
//! commits (PUT) with the refusal instead of forwarding them.

mod engine_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apoyo_sync::EngineOptions;
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::sync::transport::{Method, Request, Response, SendFuture, Transport};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig};
use apoyo_sync::wire::{ErrorBody, Reason};
use engine_support::{Env, capture, fast, start};

struct Refusing {
    inner: HttpTransport,
    clock: ManualClock,
    commits: AtomicUsize,
}

impl Transport for Refusing {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let resp = if req.method == Method::Put && self.commits.load(Ordering::SeqCst) == 0 {
                // The first commit (in a run with time to spare): busy, come back in a minute.
                self.commits.fetch_add(1, Ordering::SeqCst);
                Ok(Response {
                    status: 503,
                    headers: vec![("retry-after".into(), "60".into())],
                    body: Vec::new(),
                })
            } else if req.method == Method::Put {
                self.commits.fetch_add(1, Ordering::SeqCst);
                let body = apoyo_sync::wire::encode(&ErrorBody {
                    v: 1,
                    reason: Reason::ProcessClosed,
                    detail: "probe".into(),
                })
                .unwrap();
                Ok(Response {
                    status: 422,
                    headers: vec![("content-type".into(), "application/cbor".into())],
                    body,
                })
            } else {
                self.inner.send(req, limit).await
            };
            self.clock.advance(time::Duration::seconds(2));
            resp
        })
    }
}

#[test]
fn a_permanent_refusal_answered_in_a_short_run_is_quarantined_eventually() {
    let env: Env = start();
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let t = Arc::new(Refusing {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        clock: clock.clone(),
        commits: AtomicUsize::new(0),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        clock: Arc::new(clock.clone()),
        ..fast()
    };
    let e = env.activated("phone", opts);
    e.capture(capture("revocacion-2022", 0, 40))
        .expect("capture");
    // Run 1, with time to spare: the parts upload, the commit is told to come back in 60 s.
    let first = e.sync(Some(Duration::from_secs(40))).expect("sync");
    assert_eq!(
        (first.quarantined, t.commits.load(Ordering::SeqCst)),
        (0, 1),
        "{first:?}"
    );
    clock.advance(time::Duration::seconds(60));
    // Then short runs 30 s apart (catalog fresh: the commit is each run's first exchange).
    let mut quarantined = 0;
    for _ in 0..10 {
        clock.advance(time::Duration::seconds(30));
        let r = e.sync(Some(Duration::from_millis(3500))).expect("sync");
        quarantined += r.quarantined;
        if quarantined > 0 || t.commits.load(Ordering::SeqCst) >= 9 {
            break;
        }
    }
    let commits = t.commits.load(Ordering::SeqCst) - 1;
    assert!(commits >= 1, "the capture's commit was never sent again");
    assert_eq!(
        quarantined, 1,
        "the endpoint refused the commit for good {commits} times (one per run); \
         the capture was never quarantined nor backed off"
    );
}
