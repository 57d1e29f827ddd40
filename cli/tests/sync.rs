//! End-to-end sync tests: the real sync client against the real reference endpoint over HTTP
//! on loopback, with real SQLite files. Faults are injected by transport decorators (the
//! request really goes out, or really does not) and by the endpoint's chaos hook (the
//! endpoint really answers 429/503).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apoyo_endpoint::KeyRing;
use apoyo_endpoint::{Chaos, EndpointConfig, Injected, Route, RunningEndpoint};
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::transport::{Method, Request, SendFuture, TransportError};
use apoyo_sync::testkit::sync::{
    self, BackoffPolicy, FaultPlan, FaultyTransport, HttpTransport, StopReason, SyncOptions,
    TlsConfig, Transport,
};
use apoyo_sync::wire::{Provider, ReceiptResult};
use apoyo_sync::{
    CaptureId, CardFields, CredentialModel, Error, FileKeyGuard, Images, NewCapture, PartKind,
    Process, SharedClock, State, SystemClock,
};

const PROCESSES: &str = include_str!("../../examples/processes.json");

fn image(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/images")
            .join(name),
    )
    .expect("sample image")
}

struct Env {
    rt: tokio::runtime::Runtime,
    ep: Option<RunningEndpoint>,
    url: String,
    /// What the devices are provisioned with (the ring's first seal key and its INE root).
    provisioning: InePublicKeys,
    dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(ep) = self.ep.take() {
            self.rt.block_on(ep.shutdown());
        }
    }
}

fn start(processes: &str, clock: SharedClock, chaos: Option<Arc<dyn Chaos>>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = Ed25519Secret::generate().unwrap();
    let ring = KeyRing::generate(&root, clock.now()).unwrap();
    let provisioning = InePublicKeys {
        seal_key: ring.seal[0].secret.public(),
        ine_root: ring.root,
    };
    let mut cfg = EndpointConfig::new(
        dir.path().join("endpoint.db"),
        ring,
        Process::parse_json_list(processes.as_bytes()).unwrap(),
    );
    cfg.dev = true;
    cfg.clock = clock;
    cfg.chaos = chaos;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ep = rt
        .block_on(apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let url = ep.url();
    Env {
        rt,
        ep: Some(ep),
        url,
        provisioning,
        dir,
    }
}

impl Env {
    fn transport(&self) -> HttpTransport {
        HttpTransport::new(&self.url, &TlsConfig::default()).unwrap()
    }

    fn stats(&self) -> serde_json::Value {
        self.dev_get("/v1/admin/stats").expect("stats")
    }

    fn dev_get(&self, path: &str) -> Option<serde_json::Value> {
        let t = self.transport();
        let resp = self
            .rt
            .block_on(t.send(
                Request::new(Method::Get, path, Duration::from_secs(10)),
                1 << 20,
            ))
            .unwrap();
        (resp.status == 200).then(|| serde_json::from_slice(&resp.body).unwrap())
    }

    fn mailbox_code(&self, email: &str) -> String {
        self.dev_get(&format!("/v1/dev/mailbox/{email}"))
            .expect("a code in the mailbox")["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A new device store, registered but not activated.
    fn registered_device(&self, name: &str, clock: SharedClock) -> (Store, String) {
        let kr =
            FileKeyGuard::open_or_create(&self.dir.path().join(format!("{name}-keyring"))).unwrap();
        let opts = StoreOptions {
            clock,
            ..Default::default()
        };
        let mut store = Store::init(
            &self.dir.path().join(name),
            &kr,
            &self.provisioning,
            None,
            opts,
        )
        .unwrap();
        let email = format!("{name}@example.org");
        sync::register_blocking(
            &mut store,
            &self.transport(),
            &self.url,
            &email,
            Provider::Google,
            &image("front.jpg"),
        )
        .unwrap();
        (store, email)
    }

    /// A new device store, registered and activated.
    fn device(&self, name: &str) -> Store {
        let (mut store, email) = self.registered_device(name, Arc::new(SystemClock));
        let code = self.mailbox_code(&email);
        sync::activate_blocking(&mut store, &self.transport(), &code).unwrap();
        store
    }
}

fn capture(store: &mut Store, process: &str, clave: &str, vigencia: Option<u16>) -> CaptureId {
    store
        .capture(NewCapture {
            process_id: process.into(),
            model: CredentialModel::parse("G").unwrap(),
            fields: CardFields {
                clave_elector: clave.into(),
                vigencia,
                ..Default::default()
            },
            location: None,
            images: Images {
                front: image("front.jpg"),
                back: image("back.jpg"),
                selfie: image("selfie.jpg"),
                signature: image("signature.png"),
            },
            collector: None,
        })
        .unwrap()
}

fn clave(i: usize) -> String {
    let l = |n: usize| char::from(b'A' + (n % 26) as u8);
    format!(
        "{}{}{}XYZ900101{:02}H{:03}",
        l(i / 676),
        l(i / 26),
        l(i),
        1 + i % 32,
        i % 1000
    )
}

fn fast() -> SyncOptions {
    SyncOptions {
        budget: Duration::from_secs(60),
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        seed: Some(1),
        progress: None,
        control: None,
    }
}

fn run(store: &mut Store, t: &dyn Transport, opts: SyncOptions) -> sync::SyncReport {
    sync::sync_blocking(store, t, opts).unwrap()
}

fn parts_files(store: &Store) -> usize {
    std::fs::read_dir(store.dir().join("parts"))
        .unwrap()
        .count()
}

#[test]
fn whole_flow_counts_every_capture_and_leaves_no_bytes() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut dev = env.device("a");
    let ids: Vec<CaptureId> = (0..4)
        .map(|i| capture(&mut dev, "revocacion-2022", &clave(i), Some(2030)))
        .collect();
    let report = run(&mut dev, &env.transport(), fast());
    assert_eq!(
        (
            report.committed,
            report.duplicates,
            report.quarantined,
            report.pending
        ),
        (4, 0, 0, 0)
    );
    assert_eq!(report.stopped, StopReason::Drained);
    assert!(report.bytes_sent > 4 * 90_000, "{}", report.bytes_sent);
    let stats = env.stats();
    assert_eq!(stats["counted"], 4);
    assert_eq!(stats["duplicates"], 0);
    // Every receipt kept and verified; nothing of the captures left on the device.
    let receipts = dev.receipts().unwrap();
    assert_eq!(receipts.len(), 4);
    assert!(
        receipts
            .iter()
            .all(|r| r.verified && r.result == ReceiptResult::Counted)
    );
    let status = dev.status().unwrap();
    assert_eq!((status.purged, status.pending_bytes), (4, 0));
    assert_eq!(parts_files(&dev), 0);
    for id in &ids {
        assert!(matches!(
            dev.endpoint_seal(id),
            Err(Error::CaptureGone { .. })
        ));
        assert!(matches!(
            dev.read_part(id, PartKind::Selfie, &mut Vec::new()),
            Err(Error::CaptureGone { .. })
        ));
    }
}

#[test]
fn activation_refusals_and_reuse() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let env = start(PROCESSES, Arc::new(clock.clone()), None);
    let t = env.transport();
    let (mut a, email_a) = env.registered_device("a", Arc::new(SystemClock));
    let code_a = env.mailbox_code(&email_a);

    // A wrong code.
    let wrong = if code_a.starts_with('2') { "3" } else { "2" }.to_string() + &code_a[1..];
    let e = sync::activate_blocking(&mut a, &t, &wrong).unwrap_err();
    assert!(e.to_string().contains("activation_code_wrong"), "{e}");

    // Another device presenting A's code.
    let (mut b, _) = env.registered_device("b", Arc::new(SystemClock));
    let e = sync::activate_blocking(&mut b, &t, &code_a).unwrap_err();
    assert!(
        e.to_string().contains("activation_code_foreign_device"),
        "{e}"
    );

    // The right code works, and works again (another process while it is valid).
    let first = sync::activate_blocking(&mut a, &t, &code_a).unwrap();
    let second = sync::activate_blocking(&mut a, &t, &code_a).unwrap();
    assert_ne!(first.token, second.token);
    assert_eq!(first.expires_at, second.expires_at);
    assert!(second.processes.len() >= 2);

    // After 24 hours the code is expired: register again.
    clock.advance(time::Duration::hours(24) + time::Duration::seconds(1));
    let e = sync::activate_blocking(&mut a, &t, &code_a).unwrap_err();
    assert!(e.to_string().contains("activation_code_expired"), "{e}");
}

/// Decorator that loses the response of the first `n` commits after the endpoint acted.
struct LoseCommitResponses<T> {
    inner: T,
    left: AtomicU32,
    commits: AtomicU32,
}

impl<T: Transport> Transport for LoseCommitResponses<T> {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let is_commit = req.method == Method::Put;
            let resp = self.inner.send(req, limit).await;
            if is_commit {
                self.commits.fetch_add(1, Ordering::SeqCst);
                if self.left.load(Ordering::SeqCst) > 0 {
                    self.left.fetch_sub(1, Ordering::SeqCst);
                    return Err(TransportError::Broken("test: response lost".into()));
                }
            }
            resp
        })
    }
}

#[test]
fn a_lost_commit_response_is_retried_and_counted_once() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut dev = env.device("a");
    let id = capture(&mut dev, "revocacion-2022", &clave(1), None);
    let t = LoseCommitResponses {
        inner: env.transport(),
        left: AtomicU32::new(2),
        commits: AtomicU32::new(0),
    };
    let report = run(&mut dev, &t, fast());
    assert_eq!(
        t.commits.load(Ordering::SeqCst),
        3,
        "two lost answers, then the replay answered"
    );
    assert_eq!((report.committed, report.retries), (1, 2));
    let stats = env.stats();
    assert_eq!(
        (stats["counted"].as_u64(), stats["received"].as_u64()),
        (Some(1), Some(1))
    );
    let r = dev.receipts().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].capture_id, id);
    assert!(r[0].verified);
}

/// Decorator that cuts the body of the `cut_index`-th PATCH (0-based) to one upload midway —
/// the first upload to get that many — and records every PATCH as (upload, offset, bytes).
/// Per upload, because a run sends several parts' PATCHes at once (ADR 0022).
struct CutOnePatch<T> {
    inner: T,
    cut_index: usize,
    cut: Mutex<Option<String>>,
    sent: Mutex<Vec<(String, u64, usize)>>,
}

impl<T: Transport> Transport for CutOnePatch<T> {
    fn send(&self, mut req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            if req.method == Method::Patch {
                let offset: u64 = req
                    .headers
                    .iter()
                    .find(|(k, _)| k == "upload-offset")
                    .unwrap()
                    .1
                    .parse()
                    .unwrap();
                let mut sent = self.sent.lock().unwrap();
                let n = sent.iter().filter(|(p, _, _)| *p == req.path).count();
                let mut cut = self.cut.lock().unwrap();
                let len = if n == self.cut_index && cut.is_none() {
                    *cut = Some(req.path.clone());
                    let half = req.body.len() / 2;
                    req.abort_body_after = Some(half);
                    half
                } else {
                    req.body.len()
                };
                sent.push((req.path.clone(), offset, len));
            }
            self.inner.send(req, limit).await
        })
    }
}

#[test]
fn a_cut_upload_resumes_from_the_servers_offset() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut dev = env.device("a");
    // A selfie of several PATCHes (front, back and selfie are each 1 PATCH here, so make a big one).
    let mut selfie = image("selfie.jpg");
    selfie.resize(600_000, 0x5a);
    let id = dev
        .capture(NewCapture {
            process_id: "revocacion-2022".into(),
            model: CredentialModel::parse("G").unwrap(),
            fields: CardFields {
                clave_elector: clave(2),
                ..Default::default()
            },
            location: None,
            images: Images {
                front: image("front.jpg"),
                back: image("back.jpg"),
                selfie,
                signature: image("signature.png"),
            },
            collector: None,
        })
        .unwrap();
    let parts = dev.parts(&id).unwrap();
    let selfie_len = parts
        .iter()
        .find(|p| p.kind == PartKind::Selfie)
        .unwrap()
        .ct_len;
    let before_selfie: u64 = parts
        .iter()
        .filter(|p| p.kind < PartKind::Selfie)
        .map(|p| p.ct_len)
        .sum();
    // Cut the 4th PATCH of the selfie (the only part of several PATCHes), i.e. after 3 × 64 KiB
    // were acknowledged.
    let t = CutOnePatch {
        inner: env.transport(),
        cut_index: 3,
        cut: Mutex::new(None),
        sent: Mutex::new(Vec::new()),
    };
    let report = run(&mut dev, &t, fast());
    assert_eq!(report.committed, 1);
    assert!(report.retries >= 1);
    let sent = t.sent.lock().unwrap().clone();
    let total: u64 = sent.iter().map(|(_, _, n)| *n as u64).sum();
    let all_parts: u64 = parts.iter().map(|p| p.ct_len).sum();
    let resent = total - all_parts;
    assert!(
        resent > 0 && resent < 65536,
        "re-sent {resent} bytes: must be less than one PATCH"
    );
    // The next PATCH to the cut upload started at the server's offset (3 × 64 KiB into the
    // selfie), not 0.
    let upload = t.cut.lock().unwrap().clone().expect("a PATCH was cut");
    let selfie: Vec<(u64, usize)> = sent
        .iter()
        .filter(|(p, _, _)| *p == upload)
        .map(|(_, o, n)| (*o, *n))
        .collect();
    assert_eq!(selfie[..3], [(0, 65536), (65536, 65536), (131072, 65536)]);
    let (resume_offset, _) = selfie[4];
    assert_eq!(
        resume_offset,
        3 * 65536,
        "resumed at {resume_offset} (selfie is {selfie_len} bytes after {before_selfie})"
    );
    assert_eq!(env.stats()["counted"], 1);
}

#[test]
fn the_same_citizen_on_two_devices_counts_once() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut a = env.device("a");
    let mut b = env.device("b");
    let first = capture(&mut a, "revocacion-2022", &clave(7), None);
    let second = capture(&mut b, "revocacion-2022", &clave(7), None);
    let ra = run(&mut a, &env.transport(), fast());
    let rb = run(&mut b, &env.transport(), fast());
    assert_eq!((ra.committed, ra.duplicates), (1, 0));
    assert_eq!((rb.committed, rb.duplicates), (0, 1));
    let r = b.receipts().unwrap();
    assert_eq!(r[0].capture_id, second);
    assert_eq!(r[0].result, ReceiptResult::Duplicate);
    // v1.1: another device (another collector) is not told which capture was counted.
    assert_eq!(r[0].first_capture_id, None);
    assert!(
        r[0].verified,
        "the duplicate receipt verifies against the INE root"
    );
    let _ = first;
    let stats = env.stats();
    assert_eq!(
        (stats["counted"].as_u64(), stats["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
}

/// The endpoint answers `status` with Retry-After to the first `n` commits.
struct BusyCommits {
    status: u16,
    left: AtomicU32,
    seen: Mutex<Vec<Instant>>,
}

impl Chaos for BusyCommits {
    fn before(&self, route: Route, _device: Option<&str>) -> Option<Injected> {
        if !matches!(route, Route::Commit) {
            return None;
        }
        self.seen.lock().unwrap().push(Instant::now());
        if self.left.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.left.fetch_sub(1, Ordering::SeqCst);
        Some(Injected::Status {
            status: self.status,
            retry_after_secs: Some(1),
        })
    }
}

fn retry_after_is_honoured(status: u16) {
    let chaos = Arc::new(BusyCommits {
        status,
        left: AtomicU32::new(2),
        seen: Mutex::new(Vec::new()),
    });
    let env = start(PROCESSES, Arc::new(SystemClock), Some(chaos.clone()));
    let mut dev = env.device("a");
    capture(&mut dev, "revocacion-2022", &clave(3), None);
    let report = run(&mut dev, &env.transport(), fast());
    assert_eq!((report.committed, report.retries), (1, 2));
    let seen = chaos.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for w in seen.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(950),
            "retried after {:?}, Retry-After was 1 s",
            w[1] - w[0]
        );
    }
}

#[test]
fn retry_after_on_503_is_honoured() {
    retry_after_is_honoured(503);
}

#[test]
fn retry_after_on_429_is_honoured() {
    retry_after_is_honoured(429);
}

#[test]
fn a_permanent_rejection_quarantines_with_its_reason_and_keeps_the_capture() {
    // The endpoint's revocación accepts only cards valid through 2022; the device was told
    // (wrongly) that any card is fine.
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut dev = env.device("a");
    let lax = PROCESSES.replace(
        "\"vigencia_cutoff\": \"2022-01-01\"",
        "\"vigencia_cutoff\": \"2000-01-01\"",
    );
    dev.put_processes(&Process::parse_json_list(lax.as_bytes()).unwrap())
        .unwrap();
    let bad = capture(&mut dev, "revocacion-2022", &clave(4), Some(2019));
    let good = capture(&mut dev, "revocacion-2022", &clave(5), Some(2030));
    let report = run(&mut dev, &env.transport(), fast());
    assert_eq!(
        (report.committed, report.quarantined, report.pending),
        (1, 1, 0)
    );
    let info = dev.info(&bad).unwrap();
    assert_eq!(info.state, State::Quarantined);
    assert_eq!(info.reason.as_deref(), Some("credential_expired"));
    assert_eq!(dev.status().unwrap().quarantined, 1);
    // Never deleted: the device's copy still opens.
    let mut selfie = Vec::new();
    dev.read_part(&bad, PartKind::Selfie, &mut selfie).unwrap();
    assert_eq!(selfie, image("selfie.jpg"));
    assert_eq!(dev.info(&good).unwrap().state, State::Purged);
    // Retry on demand puts it back in the queue (and the endpoint refuses it again).
    dev.retry_quarantined(&bad).unwrap();
    assert_eq!(dev.info(&bad).unwrap().state, State::Captured);
    let again = run(&mut dev, &env.transport(), fast());
    assert_eq!(again.quarantined, 1);
    assert_eq!(
        env.stats()["rejected"]["credential_expired"].as_u64(),
        Some(1)
    );
}

/// Counts the requests that really go out, per method; answers the first `fake_missing`
/// commits itself with `409 upload_missing` (an endpoint that holds no stored verdict).
struct CountRequests<T> {
    inner: T,
    sent: Mutex<Vec<Method>>,
    fake_missing: AtomicU32,
}

impl<T> CountRequests<T> {
    fn new(inner: T, fake_missing: u32) -> Self {
        CountRequests {
            inner,
            sent: Mutex::new(Vec::new()),
            fake_missing: AtomicU32::new(fake_missing),
        }
    }

    fn count(&self, m: Method) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|x| **x == m)
            .count()
    }
}

impl<T: Transport> Transport for CountRequests<T> {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            if req.method == Method::Put && self.fake_missing.load(Ordering::SeqCst) > 0 {
                self.fake_missing.fetch_sub(1, Ordering::SeqCst);
                let body = apoyo_sync::wire::ErrorBody {
                    v: 1,
                    reason: apoyo_sync::wire::Reason::UploadMissing,
                    detail: "test: no stored verdict".into(),
                };
                return Ok(apoyo_sync::testkit::sync::transport::Response {
                    status: 409,
                    headers: vec![("content-type".into(), "application/cbor".into())],
                    body: apoyo_sync::wire::encode(&body).unwrap(),
                });
            }
            self.sent.lock().unwrap().push(req.method);
            self.inner.send(req, limit).await
        })
    }
}

/// A capture quarantined `credential_expired` on a live endpoint, and its store.
fn rejected_capture(env: &Env, name: &str, i: usize) -> (Store, CaptureId) {
    let mut dev = env.device(name);
    let lax = PROCESSES.replace(
        "\"vigencia_cutoff\": \"2022-01-01\"",
        "\"vigencia_cutoff\": \"2000-01-01\"",
    );
    dev.put_processes(&Process::parse_json_list(lax.as_bytes()).unwrap())
        .unwrap();
    let bad = capture(&mut dev, "revocacion-2022", &clave(i), Some(2019));
    let report = run(&mut dev, &env.transport(), fast());
    assert_eq!(report.quarantined, 1);
    assert_eq!(
        dev.info(&bad).unwrap().reason.as_deref(),
        Some("credential_expired")
    );
    (dev, bad)
}

#[test]
fn retrying_a_stored_rejection_commits_before_uploading() {
    // Spec gap 7: the endpoint replays a stored verdict before it looks at uploads, so a
    // retry must not upload the five parts again (they count toward the upload limit).
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let (mut dev, bad) = rejected_capture(&env, "a", 60);
    dev.retry_quarantined(&bad).unwrap();
    let t = CountRequests::new(env.transport(), 0);
    let again = run(&mut dev, &t, fast());
    assert_eq!((again.quarantined, again.retries), (1, 0));
    let wire: Vec<usize> = [Method::Post, Method::Patch, Method::Head, Method::Put]
        .into_iter()
        .map(|m| t.count(m))
        .collect();
    assert_eq!(wire, [0, 0, 0, 1], "POST, PATCH, HEAD, PUT after the retry");
    let info = dev.info(&bad).unwrap();
    assert_eq!(info.state, State::Quarantined);
    assert_eq!(info.reason.as_deref(), Some("credential_expired"));
    // The same stored verdict, replayed: the endpoint decided once.
    let stats = env.stats();
    assert_eq!(stats["rejected"]["credential_expired"].as_u64(), Some(1));
    assert_eq!(stats["received"].as_u64(), Some(1));
    // And again: a second retry also commits first.
    dev.retry_quarantined(&bad).unwrap();
    let t = CountRequests::new(env.transport(), 0);
    run(&mut dev, &t, fast());
    assert_eq!((t.count(Method::Post), t.count(Method::Put)), (0, 1));
}

#[test]
fn retrying_a_stored_rejection_uploads_only_after_upload_missing() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let (mut dev, bad) = rejected_capture(&env, "a", 61);
    dev.retry_quarantined(&bad).unwrap();
    // The first commit is answered upload_missing: only then are the parts uploaded, and the
    // commit after them gets the stored verdict.
    let t = CountRequests::new(env.transport(), 1);
    let again = run(&mut dev, &t, fast());
    assert_eq!((again.quarantined, again.retries), (1, 1));
    assert_eq!((t.count(Method::Post), t.count(Method::Put)), (5, 1));
    assert_eq!(
        dev.info(&bad).unwrap().reason.as_deref(),
        Some("credential_expired")
    );
    assert_eq!(
        env.stats()["rejected"]["credential_expired"].as_u64(),
        Some(1)
    );
}

/// Every commit gets 503 with Retry-After: 1.
struct AlwaysBusy;

impl Chaos for AlwaysBusy {
    fn before(&self, route: Route, _device: Option<&str>) -> Option<Injected> {
        matches!(route, Route::Commit).then_some(Injected::Status {
            status: 503,
            retry_after_secs: Some(1),
        })
    }
}

#[test]
fn an_unbounded_budget_is_a_year_not_an_overflow() {
    // An app may pass Duration::MAX for "no limit": the run must not panic adding it to now.
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut dev = env.device("a");
    capture(&mut dev, "revocacion-2022", &clave(40), Some(2030));
    let mut opts = fast();
    opts.budget = Duration::MAX;
    let report = run(&mut dev, &env.transport(), opts);
    assert_eq!((report.committed, report.pending), (1, 0));
    assert_eq!(report.stopped, StopReason::Drained);
}

#[test]
fn the_time_budget_is_respected_and_the_schedule_persists() {
    let env = start(PROCESSES, Arc::new(SystemClock), Some(Arc::new(AlwaysBusy)));
    let mut dev = env.device("a");
    let ids: Vec<CaptureId> = (0..3)
        .map(|i| capture(&mut dev, "revocacion-2022", &clave(10 + i), None))
        .collect();
    let mut opts = fast();
    opts.budget = Duration::from_secs(2);
    let started = Instant::now();
    let report = run(&mut dev, &env.transport(), opts);
    let took = started.elapsed();
    assert_eq!(report.stopped, StopReason::Budget);
    assert_eq!((report.committed, report.pending), (0, 3));
    assert!(report.retries >= 3);
    assert!(
        took < Duration::from_millis(3500),
        "a 2 s budget took {took:?}"
    );
    // Attempts and the next attempt time are in SQLite: reopen and look.
    let dir = dev.dir().to_path_buf();
    drop(dev);
    let kr = FileKeyGuard::open(&env.dir.path().join("a-keyring")).unwrap();
    let dev = Store::open(&dir, &kr, StoreOptions::default()).unwrap();
    for id in &ids {
        let info = dev.info(id).unwrap();
        assert!(info.attempts >= 1, "{info:?}");
        assert_eq!(info.state, State::Uploading);
    }
    assert!(
        dev.due_captures(time::OffsetDateTime::now_utc() - time::Duration::seconds(5))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_expired_activation_stops_the_run_without_quarantining() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let (mut dev, email) = env.registered_device("a", Arc::new(clock.clone()));
    let code = env.mailbox_code(&email);
    sync::activate_blocking(&mut dev, &env.transport(), &code).unwrap();
    capture(&mut dev, "revocacion-2022", &clave(20), None);
    clock.advance(time::Duration::hours(25));
    let report = run(&mut dev, &env.transport(), fast());
    assert_eq!(report.stopped, StopReason::NeedsActivation);
    assert_eq!((report.pending, report.quarantined), (1, 0));
    assert_eq!(env.stats()["received"], 0);
}

#[test]
fn a_lossy_link_delivers_everything_exactly_once() {
    let env = start(PROCESSES, Arc::new(SystemClock), None);
    let mut a = env.device("a");
    let mut b = env.device("b");
    for i in 0..5 {
        capture(&mut a, "revocacion-2022", &clave(30 + i), None);
    }
    for i in 3..7 {
        capture(&mut b, "revocacion-2022", &clave(30 + i), None); // 2 of them duplicate A's
    }
    let plan = FaultPlan {
        drop_request: 0.15,
        lose_response: 0.15,
        cut_upload: 0.2,
    };
    let ta = FaultyTransport::new(env.transport(), plan, 11);
    let tb = FaultyTransport::new(env.transport(), plan, 12);
    let mut done = (0u64, 0u64);
    // Bounded as a whole (issue 17): against an endpoint that answers 500 to everything the
    // runs would otherwise spend their full budgets, ten times over (20 minutes).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let within = || {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "not delivered within 120 s");
        SyncOptions {
            budget: left.min(fast().budget),
            ..fast()
        }
    };
    for _ in 0..10 {
        let ra = run(&mut a, &ta, within());
        let rb = run(&mut b, &tb, within());
        done.0 += ra.committed + rb.committed;
        done.1 += ra.duplicates + rb.duplicates;
        if ra.pending + rb.pending == 0 {
            break;
        }
    }
    assert!(
        ta.stats.lost_responses.load(Ordering::Relaxed)
            + tb.stats.lost_responses.load(Ordering::Relaxed)
            > 0
    );
    assert!(
        ta.stats.cut_uploads.load(Ordering::Relaxed) + tb.stats.cut_uploads.load(Ordering::Relaxed)
            > 0
    );
    assert_eq!(done, (7, 2));
    let stats = env.stats();
    assert_eq!(
        (stats["counted"].as_u64(), stats["duplicates"].as_u64()),
        (Some(7), Some(2))
    );
    assert_eq!(a.status().unwrap().purged + b.status().unwrap().purged, 9);
}
