//! Stop semantics while two captures are in flight (ADR 0022, amendment; found by review): a
//! metered allowance met mid-run makes the next captures go one at a time, a re-activation
//! answer to one capture's commit stops the other, and a failing older capture still hands
//! over to the next. Real reference endpoint on loopback, real HTTP, real SQLite; the
//! transport only delays requests, counts what is in flight, and (one test) answers the first
//! commit with a documented refusal.

mod engine_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apoyo_sync::testkit::sync::transport::{Method, Request, Response, SendFuture, Transport};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig};
use apoyo_sync::wire::{ErrorBody, Reason};
use apoyo_sync::{Engine, EngineOptions, NetworkKind, NetworkPolicy, StopReason};
use engine_support::{capture, fast, start};

/// What the probe transport does at the first commit (PUT).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtFirstCommit {
    /// Move the phone from Wi-Fi to a cellular link with an allowance (one at a time).
    GoMetered,
    /// Answer it `commit_signature_invalid` (re-activation needed), not sending it.
    RefuseReactivate,
}

#[derive(Default)]
struct Book {
    next: u64,
    /// In flight: (request id, capture key or None when unknown).
    flying: Vec<(u64, Option<String>)>,
    /// Upload path -> capture key (from the creation's metadata).
    uploads: HashMap<String, String>,
    /// Captures whose first upload was created before the first commit.
    early: HashSet<String>,
    /// Times a request of a capture begun after the first commit was in flight beside another.
    late_overlaps: u64,
    /// Requests that entered after the refusal was answered: (method, path).
    after_refusal: Vec<(Method, String)>,
}

struct Probe {
    inner: HttpTransport,
    at_first_commit: AtFirstCommit,
    engine: Mutex<Weak<Engine>>,
    fired: AtomicBool,
    refused_answered: AtomicBool,
    book: Mutex<Book>,
    commits: AtomicU64,
}

fn meta_capture(req: &Request) -> Option<String> {
    let meta = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("upload-metadata"))?;
    Some(meta.1.split(',').next()?.to_string())
}

impl Probe {
    fn capture_of(&self, b: &Book, req: &Request) -> Option<String> {
        match req.method {
            Method::Post => meta_capture(req),
            Method::Patch | Method::Head => b.uploads.get(&req.path).cloned(),
            _ => None,
        }
    }

    fn enter(&self, req: &Request) -> (u64, bool) {
        let mut b = self.book.lock().unwrap();
        let id = b.next;
        b.next += 1;
        if self.refused_answered.load(Ordering::SeqCst) {
            b.after_refusal.push((req.method, req.path.clone()));
        }
        let first_commit = req.method == Method::Put && !self.fired.swap(true, Ordering::SeqCst);
        if !self.fired.load(Ordering::SeqCst)
            && let Some(c) = meta_capture(req)
        {
            b.early.insert(c);
        }
        let cap = self.capture_of(&b, req);
        b.flying.push((id, cap));
        if self.fired.load(Ordering::SeqCst) && b.flying.len() > 1 {
            let late = b
                .flying
                .iter()
                .any(|(_, c)| c.as_ref().is_some_and(|c| !b.early.contains(c)));
            if late {
                b.late_overlaps += 1;
            }
        }
        (id, first_commit)
    }

    fn leave(&self, id: u64, req: &Request, resp: Option<&Response>) {
        let mut b = self.book.lock().unwrap();
        b.flying.retain(|(i, _)| *i != id);
        if let (Method::Post, Some(r)) = (req.method, resp)
            && let Some(loc) = r
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            && let Some(c) = meta_capture(req)
        {
            let path = &loc.1[loc.1.find("/v1/uploads/").unwrap()..];
            b.uploads.insert(path.to_string(), c);
        }
    }
}

impl Transport for Probe {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let (id, first_commit) = self.enter(&req);
            if req.method == Method::Put {
                self.commits.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            if first_commit {
                match self.at_first_commit {
                    AtFirstCommit::GoMetered => {
                        if let Some(e) = self.engine.lock().unwrap().upgrade() {
                            e.set_network(NetworkKind::Cellular);
                        }
                    }
                    AtFirstCommit::RefuseReactivate => {
                        let body = apoyo_sync::wire::encode(&ErrorBody {
                            v: 1,
                            reason: Reason::CommitSignatureInvalid,
                            detail: "probe".into(),
                        })
                        .unwrap();
                        self.leave(id, &req, None);
                        self.refused_answered.store(true, Ordering::SeqCst);
                        return Ok(Response {
                            status: 403,
                            headers: vec![("content-type".into(), "application/cbor".into())],
                            body,
                        });
                    }
                }
            }
            let resp = self.inner.send(req.clone(), limit).await;
            self.leave(id, &req, resp.as_ref().ok());
            resp
        })
    }
}

fn phone(
    at: AtFirstCommit,
    captures: usize,
    first: usize,
) -> (engine_support::Env, Arc<Probe>, Arc<Engine>) {
    let env = start();
    let t = Arc::new(Probe {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        at_first_commit: at,
        engine: Mutex::new(Weak::new()),
        fired: AtomicBool::new(false),
        refused_answered: AtomicBool::new(false),
        book: Mutex::new(Book::default()),
        commits: AtomicU64::new(0),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        ..fast()
    };
    let e = Arc::new(env.activated("phone", opts));
    *t.engine.lock().unwrap() = Arc::downgrade(&e);
    for i in 0..captures {
        e.capture(capture("revocacion-2022", first + i, 12))
            .unwrap();
    }
    (env, t, e)
}

/// `RunControl::one_at_a_time` (a metered allowance) says exchanges go one at a time. The
/// phone leaves Wi-Fi for a cellular link with an allowance (room to spare) as the first
/// commit goes; every capture begun after that must then go alone. The pipeline reads the
/// rule once per batch of due captures (`through`), so later captures still overlap the one
/// before (its commit, its last PATCHes).
#[test]
fn a_metered_allowance_met_mid_run_makes_later_captures_go_one_at_a_time() {
    let (_env, t, e) = phone(AtFirstCommit::GoMetered, 5, 700);
    e.set_network(NetworkKind::Wifi);
    e.set_network_policy(NetworkPolicy {
        wifi_only: false,
        cellular_allowance_bytes: Some(500 * 1024 * 1024),
    });
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert!(t.fired.load(Ordering::SeqCst));
    assert_eq!(r.stopped, StopReason::Drained, "{r:?}");
    let b = t.book.lock().unwrap();
    assert_eq!(
        b.late_overlaps,
        0,
        "requests of captures begun on the metered link overlapped another request {} times ({} captures begun before the switch)",
        b.late_overlaps,
        b.early.len()
    );
}

/// A commit answered `commit_signature_invalid` (re-activation needed) stops the run: no
/// other commit may be sent after it in that run, and no more bytes uploaded.
#[test]
fn no_commit_is_sent_after_a_commit_says_needs_activation() {
    let (_env, t, e) = phone(AtFirstCommit::RefuseReactivate, 4, 800);
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert!(t.refused_answered.load(Ordering::SeqCst));
    assert_eq!(r.stopped, StopReason::NeedsActivation, "{r:?}");
    let b = t.book.lock().unwrap();
    let puts = b
        .after_refusal
        .iter()
        .filter(|(m, _)| *m == Method::Put)
        .count();
    let patches = b
        .after_refusal
        .iter()
        .filter(|(m, _)| *m == Method::Patch)
        .count();
    assert_eq!(
        (puts, patches),
        (0, 0),
        "after the run learned it needs activation: {puts} commits, {patches} PATCHes sent (committed {})",
        r.committed
    );
}

/// Fails every PATCH of the first capture queued (its uploads keep being cut); the others
/// pass through. Used to check the hand-over when the older capture's upload fails.
struct FailFirst {
    inner: HttpTransport,
    first: Mutex<Option<String>>,
    doomed: Mutex<HashSet<String>>,
}

impl Transport for FailFirst {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if req.method == Method::Patch && self.doomed.lock().unwrap().contains(&req.path) {
                return Err(
                    apoyo_sync::testkit::sync::transport::TransportError::Broken(
                        "probe: the first capture's PATCHes are cut".into(),
                    ),
                );
            }
            let resp = self.inner.send(req.clone(), limit).await?;
            if req.method == Method::Post && req.path == "/v1/uploads" {
                let cap = meta_capture(&req);
                let mut first = self.first.lock().unwrap();
                if first.is_none() {
                    *first = cap.clone();
                }
                if *first == cap
                    && let Some((_, loc)) = resp
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                {
                    let path = loc[loc.find("/v1/uploads/").unwrap()..].to_string();
                    self.doomed.lock().unwrap().insert(path);
                }
            }
            Ok(resp)
        })
    }
}

/// The older capture's upload fails at every PATCH (rescheduled each time): the newer
/// captures' PATCHes, waiting for its hand-over, still go, and the run ends by its budget or
/// drained, never hanging on a hand-over that does not open.
#[test]
fn a_failing_older_capture_hands_over_and_the_run_ends() {
    let env = start();
    let t = Arc::new(FailFirst {
        inner: HttpTransport::new(&env.url, &TlsConfig::default()).expect("transport"),
        first: Mutex::new(None),
        doomed: Mutex::new(HashSet::new()),
    });
    let opts = EngineOptions {
        transport: Some(t.clone()),
        ..fast()
    };
    let e = env.activated("phone", opts);
    for i in 0..4 {
        e.capture(capture("revocacion-2022", 900 + i, 40)).unwrap();
    }
    let r = e.sync(Some(Duration::from_secs(8))).unwrap();
    assert_eq!(r.committed, 3, "{r:?}");
    assert_eq!(r.pending, 1, "{r:?}");
    assert!(r.retries >= 1, "{r:?}");
}
