//! A sync run keeps several requests in flight (ADR 0022): a capture's five parts upload at
//! once, the next capture's creations beside them, and its commit then goes beside the next
//! capture's uploads, its answer settled (the capture purged) the moment it arrives, while
//! those uploads are still in flight. Against the real reference endpoint on loopback, through a
//! transport that holds every request a fixed time before sending it and counts what is in
//! flight at once (no timing is asserted, only counts). Also: a cancel and a cut connection
//! while several uploads are in flight, after a first commit, lose nothing and count nothing
//! twice.

mod engine_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apoyo_sync::testkit::sync::transport::{
    Method, Request, Response, SendFuture, Transport, TransportError,
};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig};
use apoyo_sync::{Engine, EngineOptions, Event, Hold, Listener, State, StopReason};
use engine_support::{Env, capture, fast, start};

/// What the transport does the first time three upload exchanges are in flight at once after
/// a commit was sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnOverlap {
    Nothing,
    /// Cancel the engine's run.
    Cancel,
    /// Cut the connection of every request in flight: a PATCH entering loses its body
    /// midway, the others reach the endpoint and lose their answers.
    Cut,
}

/// Holds every request `delay` before sending it, and counts requests in flight.
struct Overlap {
    inner: HttpTransport,
    delay: Duration,
    on_overlap: OnOverlap,
    engine: Mutex<Weak<Engine>>,
    next_id: AtomicU64,
    /// Ids and methods of the requests in flight.
    flying: Mutex<Vec<(u64, Method)>>,
    max_in_flight: AtomicU64,
    max_patches: AtomicU64,
    /// A commit (PUT) and an upload exchange (POST, HEAD, PATCH on an upload) at once.
    commit_overlapped: AtomicBool,
    /// Commits sent so far.
    commits: AtomicU64,
    fired: AtomicBool,
    /// Requests whose answers are to be lost.
    doomed: Mutex<HashSet<u64>>,
}

impl Overlap {
    fn new(url: &str, delay: Duration, on_overlap: OnOverlap) -> Arc<Self> {
        Arc::new(Overlap {
            inner: HttpTransport::new(url, &TlsConfig::default()).expect("transport"),
            delay,
            on_overlap,
            engine: Mutex::new(Weak::new()),
            next_id: AtomicU64::new(0),
            flying: Mutex::new(Vec::new()),
            max_in_flight: AtomicU64::new(0),
            max_patches: AtomicU64::new(0),
            commit_overlapped: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            doomed: Mutex::new(HashSet::new()),
        })
    }

    /// Registers a request as in flight; returns whether it is to be cut now.
    fn enter(&self, id: u64, req: &Request) -> bool {
        let mut flying = self.flying.lock().unwrap();
        flying.push((id, req.method));
        self.max_in_flight
            .fetch_max(flying.len() as u64, Ordering::SeqCst);
        let patches = flying.iter().filter(|(_, m)| *m == Method::Patch).count();
        self.max_patches.fetch_max(patches as u64, Ordering::SeqCst);
        let commits = flying.iter().filter(|(_, m)| *m == Method::Put).count();
        let uploads = flying
            .iter()
            .filter(|(_, m)| matches!(m, Method::Post | Method::Head | Method::Patch))
            .count();
        if commits > 0 && uploads > 0 {
            self.commit_overlapped.store(true, Ordering::SeqCst);
        }
        if req.method == Method::Put {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        let several = uploads >= 3 && self.commits.load(Ordering::SeqCst) > 0;
        if !several || self.fired.swap(true, Ordering::SeqCst) {
            return false;
        }
        match self.on_overlap {
            OnOverlap::Nothing => false,
            OnOverlap::Cancel => {
                if let Some(e) = self.engine.lock().unwrap().upgrade() {
                    e.cancel();
                }
                false
            }
            OnOverlap::Cut => {
                let mut doomed = self.doomed.lock().unwrap();
                doomed.extend(flying.iter().map(|(i, _)| *i));
                true
            }
        }
    }

    fn leave(&self, id: u64) {
        self.flying.lock().unwrap().retain(|(i, _)| *i != id);
    }
}

impl Transport for Overlap {
    fn send(&self, mut req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            if self.enter(id, &req) && req.method == Method::Patch && req.body.len() > 1 {
                req.abort_body_after = Some(req.body.len() / 2);
            }
            tokio::time::sleep(self.delay).await;
            let resp = self.inner.send(req, limit).await;
            self.leave(id);
            if self.doomed.lock().unwrap().remove(&id) {
                return Err(TransportError::Broken("cut with others in flight".into()));
            }
            resp
        })
    }
}

const CAPTURES: usize = 4;

/// An activated engine over the overlap transport, with [`CAPTURES`] captures queued.
fn phone(env: &Env, t: &Arc<Overlap>, first: usize) -> Arc<Engine> {
    let opts = EngineOptions {
        transport: Some(t.clone()),
        ..fast()
    };
    let e = Arc::new(env.activated("phone", opts));
    *t.engine.lock().unwrap() = Arc::downgrade(&e);
    for i in 0..CAPTURES {
        e.capture(capture("revocacion-2022", first + i, 12))
            .unwrap();
    }
    e
}

/// Every capture committed exactly once and purged: nothing lost, nothing counted twice.
fn assert_exactly_once(env: &Env, e: &Engine) {
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert_eq!((r.pending, r.stopped), (0, StopReason::Drained), "{r:?}");
    for c in e.captures().unwrap() {
        assert_eq!(c.state, State::Purged, "{c:?}");
    }
    let receipts = e.receipts().unwrap();
    assert_eq!(receipts.len(), CAPTURES, "one receipt per capture");
    let distinct: HashSet<_> = receipts.iter().map(|r| r.capture_id).collect();
    assert_eq!(distinct.len(), CAPTURES);
    let stats = env.stats();
    assert_eq!(stats["counted"], CAPTURES as u64, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
}

/// Counts the captures purged while upload exchanges were in flight.
struct PurgeWatch {
    transport: Arc<Overlap>,
    purged: AtomicU64,
    purged_while_uploading: AtomicU64,
}

impl Listener for PurgeWatch {
    fn on_event(&self, event: &Event) {
        let Event::Capture(c) = event else { return };
        if c.state != State::Purged {
            return;
        }
        self.purged.fetch_add(1, Ordering::SeqCst);
        let uploads = self
            .transport
            .flying
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| matches!(m, Method::Post | Method::Head | Method::Patch));
        if uploads {
            self.purged_while_uploading.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_run_uploads_a_captures_parts_at_once_and_settles_its_commit_beside_the_next_uploads() {
    let env = start();
    let t = Overlap::new(&env.url, Duration::from_millis(40), OnOverlap::Nothing);
    let e = phone(&env, &t, 100);
    let watch = Arc::new(PurgeWatch {
        transport: t.clone(),
        purged: AtomicU64::new(0),
        purged_while_uploading: AtomicU64::new(0),
    });
    e.set_listener(Some(watch.clone()));
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert_eq!((r.pending, r.stopped), (0, StopReason::Drained), "{r:?}");
    assert_eq!(r.committed, CAPTURES as u64);
    let max = t.max_in_flight.load(Ordering::SeqCst);
    // Two captures' five parts at once (their creations share a round trip: the second
    // capture's wait only for its PATCHes); never more, and never more than four (small)
    // PATCH bodies.
    assert_eq!(max, 10, "requests in flight at once: {max}");
    let patches = t.max_patches.load(Ordering::SeqCst);
    // Two at first; four small ones once they come back promptly (loopback).
    assert!(
        (2..=4).contains(&patches),
        "PATCHes in flight at once: {patches}"
    );
    assert!(
        t.commit_overlapped.load(Ordering::SeqCst),
        "no commit was in flight while the next capture uploaded"
    );
    // Each request waits 40 ms before it is sent: a commit is answered while the next
    // capture's uploads (a creation, then PATCHes) are still in flight, and its capture is
    // purged then, not once those uploads end.
    assert_eq!(watch.purged.load(Ordering::SeqCst), CAPTURES as u64);
    let early = watch.purged_while_uploading.load(Ordering::SeqCst);
    assert!(
        early >= 1,
        "no commit was settled while the next capture's uploads were in flight"
    );
    e.set_listener(None);
    assert_exactly_once(&env, &e);
}

#[test]
fn a_cancel_with_several_requests_in_flight_loses_nothing_and_counts_nothing_twice() {
    let env = start();
    let t = Overlap::new(&env.url, Duration::from_millis(40), OnOverlap::Cancel);
    let e = phone(&env, &t, 200);
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert!(t.fired.load(Ordering::SeqCst), "cancelled mid-flight");
    assert_eq!(r.stopped, StopReason::Held(Hold::Cancelled), "{r:?}");
    assert!(r.pending >= 1, "{r:?}");
    // The commit before the cancel was answered and recorded; a cancel is not the endpoint's
    // fault: nothing left was charged an attempt.
    assert!(r.committed >= 1, "{r:?}");
    for c in e.captures().unwrap() {
        if c.state != State::Purged {
            assert_eq!(c.attempts, 0, "{c:?}");
            assert!(
                matches!(c.state, State::Captured | State::Uploading),
                "{c:?}"
            );
        }
    }
    assert_exactly_once(&env, &e);
}

#[test]
fn a_cut_connection_with_several_requests_in_flight_loses_nothing_and_counts_nothing_twice() {
    let env = start();
    let t = Overlap::new(&env.url, Duration::from_millis(40), OnOverlap::Cut);
    let e = phone(&env, &t, 300);
    let first = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert!(t.fired.load(Ordering::SeqCst), "cut mid-flight");
    assert!(
        first.retries >= 1,
        "the cut exchanges were retried: {first:?}"
    );
    assert_exactly_once(&env, &e);
}

/// Which capture each upload belongs to, how many of each capture's parts the endpoint holds
/// whole, and, at each capture's first PATCH, how many the capture before it held.
#[derive(Default)]
struct Ledger {
    /// Upload path → (capture, length).
    uploads: HashMap<String, (String, u64)>,
    /// Captures in the order their first upload creation was sent.
    order: Vec<String>,
    complete: HashMap<String, usize>,
    /// (capture, parts of the capture before it held whole) at its first PATCH.
    first_patch: Vec<(String, usize)>,
}

/// Keeps a [`Ledger`] of the exchanges it passes to the real endpoint.
struct Recording {
    inner: HttpTransport,
    ledger: Mutex<Ledger>,
}

impl Recording {
    fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn before_send(&self, req: &Request) {
        let mut l = self.ledger.lock().unwrap();
        if req.method == Method::Post && req.path == "/v1/uploads" {
            // Queue order: the order the captures' creations are sent (their answers may
            // come back in another order).
            let meta = Self::header(&req.headers, "upload-metadata").unwrap_or_default();
            let capture = meta.split(',').next().unwrap_or_default().to_string();
            if !l.order.contains(&capture) {
                l.order.push(capture);
            }
            return;
        }
        if req.method != Method::Patch {
            return;
        }
        let Some((capture, _)) = l.uploads.get(&req.path).cloned() else {
            return;
        };
        if l.first_patch.iter().any(|(c, _)| *c == capture) {
            return;
        }
        let at = l.order.iter().position(|c| *c == capture).unwrap();
        let before = at
            .checked_sub(1)
            .map_or(5, |i| l.complete.get(&l.order[i]).copied().unwrap_or(0));
        l.first_patch.push((capture, before));
    }

    fn after_answer(&self, req: &Request, resp: &Response) {
        let mut l = self.ledger.lock().unwrap();
        match req.method {
            Method::Post if resp.status == 201 && req.path == "/v1/uploads" => {
                let meta = Self::header(&req.headers, "upload-metadata").unwrap_or_default();
                let capture = meta.split(',').next().unwrap_or_default().to_string();
                let length = Self::header(&req.headers, "upload-length").unwrap_or("0");
                let location = Self::header(&resp.headers, "location").unwrap_or_default();
                let path = &location[location.find("/v1/uploads/").unwrap()..];
                l.uploads
                    .insert(path.to_string(), (capture, length.parse().unwrap()));
            }
            Method::Patch => {
                let offset = Self::header(&resp.headers, "upload-offset")
                    .and_then(|o| o.parse::<u64>().ok());
                if let Some((capture, length)) = l.uploads.get(&req.path).cloned()
                    && offset == Some(length)
                {
                    *l.complete.entry(capture).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

impl Transport for Recording {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            // Every exchange takes a while, as on a real link, so the lanes overlap; a PATCH
            // longer (it carries the bytes), so the next capture's creations are answered
            // while the previous capture's PATCHes are still waiting for turns.
            let ms = if req.method == Method::Patch { 60 } else { 20 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.before_send(&req);
            let resp = self.inner.send(req.clone(), limit).await?;
            self.after_answer(&req, &resp);
            Ok(resp)
        })
    }
}

#[test]
fn the_next_captures_patches_wait_until_the_previous_one_cannot_use_every_turn() {
    let env = start();
    let t = Arc::new(Recording {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        ledger: Mutex::new(Ledger::default()),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        ..fast()
    };
    let e = env.activated("phone", opts);
    for i in 0..CAPTURES {
        e.capture(capture("revocacion-2022", 300 + i, 40)).unwrap();
    }
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert_eq!((r.pending, r.committed), (0, CAPTURES as u64), "{r:?}");
    let l = t.ledger.lock().unwrap();
    assert_eq!(l.order.len(), CAPTURES);
    assert_eq!(l.first_patch.len(), CAPTURES);
    for (capture, before) in &l.first_patch {
        // The tail opens once fewer lanes than PATCH turns (at most four) are left running:
        // at least two of the previous capture's five parts are then held whole.
        assert!(
            *before >= 2,
            "a capture's first PATCH went while the capture before it held {before} parts whole: {capture}"
        );
    }
}

/// Every exchange takes at least `delay` (a long round trip); records when each one starts.
struct SlowLink {
    inner: HttpTransport,
    delay: Duration,
    starts: Mutex<Vec<std::time::Instant>>,
}

impl Transport for SlowLink {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            self.starts.lock().unwrap().push(std::time::Instant::now());
            tokio::time::sleep(self.delay).await;
            self.inner.send(req, limit).await
        })
    }
}

#[test]
fn no_exchange_starts_with_less_than_a_round_trip_of_budget_left() {
    let env = start();
    let delay = Duration::from_millis(700);
    let t = Arc::new(SlowLink {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        delay,
        starts: Mutex::new(Vec::new()),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        ..fast()
    };
    let e = env.activated("phone", opts);
    for i in 0..CAPTURES {
        e.capture(capture("revocacion-2022", 500 + i, 60)).unwrap();
    }
    // Exchanges go in waves a round trip apart (0.7 s, 1.4 s, …): one falls in the last
    // round trip of this budget.
    let budget = Duration::from_millis(4600);
    let t0 = std::time::Instant::now();
    let r = e.sync(Some(budget)).unwrap();
    assert_eq!(r.stopped, StopReason::Budget, "{r:?}");
    // Each exchange took at least `delay`: once one was answered, none may start with less
    // than that left (it could only time out, its bytes sent for nothing).
    let last_allowed = t0 + budget - delay + Duration::from_millis(30);
    let starts = t.starts.lock().unwrap().clone();
    let late: Vec<_> = starts
        .iter()
        .filter(|s| **s > last_allowed)
        .map(|s| s.duration_since(t0))
        .collect();
    assert!(
        late.is_empty(),
        "exchanges started too late: {late:?} of {budget:?}"
    );
    assert!(
        starts.len() > 10,
        "the run kept exchanging: {}",
        starts.len()
    );
    // Nothing was held against the captures: the next run delivers them all, once.
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert_eq!((r.pending, r.stopped), (0, StopReason::Drained), "{r:?}");
    let stats = env.stats();
    assert_eq!(stats["counted"], CAPTURES as u64, "{stats}");
}
