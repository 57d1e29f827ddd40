//! Property test (proptest) of the store and its queue as a state machine: the fast,
//! always-run version of the `store_queue` fuzz target (docs/fuzzing.md).
//!
//! A real store syncs with a reference peer written here (the root crate cannot depend on the
//! endpoint crate, which depends on it; the fuzz target drives the real endpoint). The peer
//! speaks tus and signed commits (v1.1), opens every sealed key and part with INE's key,
//! applies the duplicate rule and signs genuine receipts, each carrying its key's certificate
//! from an INE root the test provisions the store with; `FaultyTransport` drops requests and answers and cuts
//! uploads in front of it. Operations: capture, sync, crash (drop and reopen), quarantine,
//! retry, transient failure, forgotten upload, set-aside (and moved back), time passing.
//! After every step nothing is lost, purged means receipted, the counts agree, no citizen is
//! counted twice; at the end an honest peer drains the queue.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::receipt::ReceiptSigner;
use apoyo_sync::testkit::crypto::{self, Ed25519Secret, PartOpener, wrap};
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::transport::{Method, Request, Response, SendFuture, Transport};
use apoyo_sync::testkit::sync::{FaultPlan, FaultyTransport, SyncOptions, engine};
use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::wire::trust::{self, KeyPurpose, SignedKeyCert};
use apoyo_sync::wire::{
    self as protocol, ErrorBody, ProcessList, Reason, Receipt, ReceiptPart, ReceiptResult,
    SignedCommit, SignedReceipt, limits,
};
use apoyo_sync::{CaptureId, Clock, Error, IneRoot, PartKind, Process, State};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::Fixture;
use proptest::prelude::*;

/// The store's clock reads the paused tokio clock, so the engine's backoff sleeps and the
/// store's due times move together. The test runs inside the runtime (`Runtime::enter`).
#[derive(Debug, Clone)]
struct VirtualClock {
    base: time::OffsetDateTime,
    origin: tokio::time::Instant,
}

impl Clock for VirtualClock {
    fn now(&self) -> time::OffsetDateTime {
        self.base + tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

/// The reference peer's state.
#[derive(Default)]
struct Peer {
    uploads: HashMap<String, (u64, Vec<u8>)>,
    answers: HashMap<CaptureId, (u16, Vec<u8>)>,
    counted: HashMap<(String, String), CaptureId>,
    n: u32,
}

struct RefPeer {
    state: Mutex<Peer>,
    key: EndpointSecretKey,
    signer: ReceiptSigner,
    /// The INE root's certificate of `signer`'s key, carried by every receipt.
    cert: SignedKeyCert,
    key_id: String,
    device_public: [u8; 32],
    /// The key the device signs its commits with (registered at activation in v1.1).
    device_signing: [u8; 32],
    device_id: String,
    processes: Vec<Process>,
}

fn answer(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
    Response {
        status,
        headers,
        body,
    }
}

fn refuse(status: u16, reason: Reason) -> Response {
    let body = protocol::encode(&ErrorBody {
        v: 1,
        reason,
        detail: String::new(),
    })
    .expect("encode");
    answer(status, Vec::new(), body)
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl RefPeer {
    fn handle(&self, r: &Request) -> Response {
        let mut s = self.state.lock().expect("peer");
        let path = r.path.as_str();
        match r.method {
            Method::Get => {
                let list = ProcessList {
                    v: 1,
                    processes: self.processes.clone(),
                };
                answer(200, Vec::new(), protocol::encode(&list).expect("encode"))
            }
            Method::Post => {
                let Some(len) = header(r, "upload-length").and_then(|v| v.parse().ok()) else {
                    return refuse(400, Reason::Malformed);
                };
                s.n += 1;
                let loc = format!("/v1/uploads/u{}", s.n);
                s.uploads.insert(loc.clone(), (len, Vec::new()));
                answer(201, vec![("location".into(), loc)], Vec::new())
            }
            Method::Head => match s.uploads.get(path) {
                Some((_, b)) => answer(
                    200,
                    vec![("upload-offset".into(), b.len().to_string())],
                    Vec::new(),
                ),
                None => refuse(404, Reason::NotFound),
            },
            Method::Patch => {
                let sum = header(r, "upload-checksum")
                    .and_then(|v| v.strip_prefix("sha256 "))
                    .and_then(|v| B64.decode(v).ok());
                let Some((len, b)) = s.uploads.get_mut(path) else {
                    return refuse(404, Reason::NotFound);
                };
                if header(r, "upload-offset") != Some(b.len().to_string().as_str()) {
                    return refuse(409, Reason::Other);
                }
                if sum.as_deref() != Some(&crypto::sha256(&r.body)[..])
                    || (b.len() + r.body.len()) as u64 > *len
                {
                    return refuse(460, Reason::Other);
                }
                b.extend_from_slice(&r.body);
                answer(
                    204,
                    vec![("upload-offset".into(), b.len().to_string())],
                    Vec::new(),
                )
            }
            Method::Put => self.commit(&mut s, r),
            _ => refuse(404, Reason::NotFound),
        }
    }

    /// Checks the device's signature, opens the sealed key and every part with INE's key, then
    /// counts or records a duplicate.
    fn commit(&self, s: &mut Peer, r: &Request) -> Response {
        let Ok(signed) =
            protocol::decode::<SignedCommit>(&r.body, limits::MAX_COMMIT_BYTES, "signed commit")
        else {
            return refuse(400, Reason::Malformed);
        };
        let c = trust::open_signed_commit(&self.device_signing, &signed)
            .expect("the device signs its commits with the key it registered");
        if let Some((status, body)) = s.answers.get(&c.capture_id) {
            return answer(*status, Vec::new(), body.clone());
        }
        let mut parts = Vec::new();
        for p in &c.parts {
            match s.uploads.get(&p.upload) {
                Some((len, b)) if *len == b.len() as u64 && crypto::sha256(b) == p.sha256 => {
                    parts.push((p.kind, b.clone()))
                }
                _ => return refuse(400, Reason::UploadMissing),
            }
        }
        let dk = wrap::open_from_device(
            &self.key,
            &self.device_public,
            c.capture_id.as_bytes(),
            &c.sealed_key,
        )
        .expect("the sealed key opens for INE");
        let mut manifest = Vec::new();
        for (kind, ct) in &parts {
            let mut out = Vec::new();
            PartOpener::new(&dk, c.capture_id.as_bytes(), *kind)
                .and_then(|mut o| o.open_to(ct.len() as u64, &ct[..], &mut out))
                .expect("every uploaded part authenticates for INE");
            if *kind == PartKind::Manifest {
                manifest = out;
            }
        }
        let m = Manifest::from_cbor(&manifest).expect("manifest");
        assert_eq!(m.capture_id, c.capture_id, "the manifest names the capture");
        let citizen = (m.process_id.clone(), m.fields.clave_elector.clone());
        let first = s.counted.get(&citizen).copied();
        if first.is_none() {
            s.counted.insert(citizen, c.capture_id);
        }
        let receipt = Receipt {
            v: 1,
            capture_id: c.capture_id,
            process_id: c.process_id.clone(),
            device_id: self.device_id.clone(),
            result: if first.is_some() {
                ReceiptResult::Duplicate
            } else {
                ReceiptResult::Counted
            },
            first_capture_id: first,
            parts: parts
                .iter()
                .map(|(kind, b)| ReceiptPart {
                    kind: *kind,
                    sha256: crypto::sha256(b),
                })
                .collect(),
            counted_at: BASE,
            endpoint_key_id: self.key_id.clone(),
            collector: c.collector.clone(),
            captured_at: c.captured_at,
            sealed_key_sha256: crypto::sha256(&c.sealed_key),
        };
        let rb = protocol::encode(&receipt).expect("encode");
        let sig = self.signer.sign(&protocol::receipt_signing_input(&rb));
        let body = protocol::encode(&SignedReceipt {
            receipt: rb,
            signature: sig.to_vec(),
            key_cert: Some(self.cert.clone()),
        })
        .expect("encode");
        let status = if first.is_some() { 200 } else { 201 };
        s.answers.insert(c.capture_id, (status, body.clone()));
        answer(status, Vec::new(), body)
    }
}

impl Transport for RefPeer {
    fn send(&self, req: Request, _limit: usize) -> SendFuture<'_> {
        Box::pin(async move { Ok(self.handle(&req)) })
    }
}

#[derive(Debug, Clone)]
enum Op {
    Capture {
        other: bool,
        citizen: u32,
    },
    Sync {
        seed: u64,
        lossy: bool,
        budget_secs: u64,
    },
    Crash,
    Quarantine(usize),
    Retry(usize),
    Transient(usize, i64),
    ResetUpload(usize, usize),
    SetAside,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), 0u32..4).prop_map(|(other, citizen)| Op::Capture { other, citizen }),
        3 => (any::<u64>(), any::<bool>(), 0u64..900).prop_map(|(seed, lossy, budget_secs)| Op::Sync { seed, lossy, budget_secs }),
        1 => Just(Op::Crash),
        1 => any::<usize>().prop_map(Op::Quarantine),
        1 => any::<usize>().prop_map(Op::Retry),
        1 => (any::<usize>(), 0i64..600).prop_map(|(w, s)| Op::Transient(w, s)),
        1 => (any::<usize>(), 0usize..5).prop_map(|(w, k)| Op::ResetUpload(w, k)),
        1 => Just(Op::SetAside),
        1 => (0u64..120).prop_map(Op::Advance),
    ]
}

struct Machine {
    fx: Fixture,
    clock: VirtualClock,
    store: Option<Store>,
    peer: Arc<RefPeer>,
    /// Every accepted capture: id → (process, clave).
    ids: HashMap<CaptureId, (String, String)>,
}

/// When the run starts (the virtual clock's origin); receipts are counted then.
const BASE: time::OffsetDateTime = time::macros::datetime!(2026-01-10 12:00 UTC);

/// The INE root's certificate of a receipt key, valid a year around [`BASE`].
fn receipt_cert(root: &Ed25519Secret, key: [u8; 32]) -> SignedKeyCert {
    let year = time::Duration::days(365);
    let cert = trust::key_cert(KeyPurpose::Receipt, key, BASE - year, BASE + year);
    SignedKeyCert::issue(root, &cert).expect("certificate")
}

impl Machine {
    fn new() -> Machine {
        let fx = Fixture::new();
        let clock = VirtualClock {
            base: BASE,
            origin: tokio::time::Instant::now(),
        };
        let opts = StoreOptions {
            disk_reserve_bytes: 0,
            clock: Arc::new(clock.clone()),
        };
        // Provisioned with a root whose secret the test keeps, to certify the peer's key.
        let root = Ed25519Secret::generate().expect("root");
        let provisioning = InePublicKeys {
            seal_key: fx.endpoint.public(),
            ine_root: IneRoot::from_bytes(&root.public()).expect("root key"),
        };
        let mut store =
            Store::init(&fx.store_dir(), &fx.guard(), &provisioning, None, opts).expect("init");
        let list = Process::parse_json_list(common::PROCESSES.as_bytes()).expect("processes");
        store.put_processes(&list).expect("put_processes");
        let signer = ReceiptSigner::generate().expect("signer");
        let cert = receipt_cert(&root, signer.public());
        let key_id = apoyo_sync::testkit::crypto::anchor::key_id(&signer.public());
        store.set_endpoint_url("http://127.0.0.1:9").expect("url");
        store
            .set_registration(&CaptureId::new_v7(clock.now()))
            .expect("registration");
        store
            .set_activation(
                &"ab".repeat(32),
                clock.now() + time::Duration::days(30),
                &signer.public(),
                &key_id,
            )
            .expect("activation");
        let peer = Arc::new(RefPeer {
            state: Mutex::new(Peer::default()),
            key: EndpointSecretKey::from_bytes(*fx.endpoint.as_bytes()),
            signer,
            cert,
            key_id,
            device_public: store.device_public(),
            device_signing: store.signing_public().expect("signing key"),
            device_id: store.device_id().into(),
            processes: store.processes().expect("processes"),
        });
        Machine {
            fx,
            clock,
            store: Some(store),
            peer,
            ids: HashMap::new(),
        }
    }

    fn store(&mut self) -> &mut Store {
        self.store.as_mut().expect("open")
    }

    /// Whether another capture of `id`'s citizen is live (not quarantined).
    fn live_other(&mut self, id: &CaptureId) -> bool {
        let list = self.store().list().expect("list");
        let citizen = self.ids.get(id);
        list.iter()
            .any(|c| c.id != *id && c.state != State::Quarantined && self.ids.get(&c.id) == citizen)
    }

    fn pick(&self, w: usize) -> Option<CaptureId> {
        let mut v: Vec<_> = self.ids.keys().copied().collect();
        v.sort();
        (!v.is_empty()).then(|| v[w % v.len()])
    }

    fn reopen(&mut self) {
        self.store = None;
        let opts = StoreOptions {
            disk_reserve_bytes: 0,
            clock: Arc::new(self.clock.clone()),
        };
        self.store = Some(self.fx.open_with(opts).expect("the store reopens"));
    }

    fn sync(&mut self, rt: &tokio::runtime::Runtime, seed: u64, lossy: bool, budget: Duration) {
        let plan = if lossy {
            FaultPlan::lossy()
        } else {
            FaultPlan {
                drop_request: 0.0,
                lose_response: 0.0,
                cut_upload: 0.0,
            }
        };
        let t = FaultyTransport::new(self.peer.clone(), plan, seed);
        let opts = SyncOptions {
            budget,
            seed: Some(seed),
            ..SyncOptions::default()
        };
        let store = self.store.as_mut().expect("open");
        rt.block_on(engine::run(store, &t, opts))
            .expect("a sync run never fails on the network");
    }

    fn apply(&mut self, rt: &tokio::runtime::Runtime, op: &Op) {
        match op.clone() {
            Op::Capture { other, citizen } => {
                let process = if other { "otro" } else { "nacional" };
                let clave = common::clave(citizen);
                let live: Vec<String> = {
                    let list = self.store().list().expect("list");
                    list.iter()
                        .filter(|c| {
                            c.state != State::Quarantined
                                && self.ids.get(&c.id) == Some(&(process.into(), clave.clone()))
                        })
                        .map(|c| c.id.to_string())
                        .collect()
                };
                match self.store().capture(common::capture_of(process, &clave)) {
                    Ok(id) => {
                        assert!(live.is_empty(), "a second live capture of one citizen");
                        self.ids.insert(id, (process.into(), clave));
                    }
                    Err(Error::Duplicate { earlier, .. }) => assert!(live.contains(&earlier)),
                    Err(e) => panic!("a valid capture refused: {e}"),
                }
            }
            Op::Sync {
                seed,
                lossy,
                budget_secs,
            } => self.sync(rt, seed, lossy, Duration::from_secs(budget_secs)),
            Op::Crash => self.reopen(),
            Op::Quarantine(w) => {
                if let Some(id) = self.pick(w) {
                    self.store().quarantine(&id, "test").expect("quarantine")
                }
            }
            Op::Retry(w) => {
                if let Some(id) = self.pick(w) {
                    let q = self.store().info(&id).expect("info").state == State::Quarantined;
                    // A retry must not make a second live capture of one citizen (issue 17).
                    let live_other = self.live_other(&id);
                    match self.store().retry_quarantined(&id) {
                        Ok(()) => assert!(q && !live_other, "retried into a second live capture"),
                        Err(Error::Duplicate { .. }) => assert!(q && live_other),
                        Err(e) => assert!(!q, "retry of a quarantined capture failed: {e}"),
                    }
                }
            }
            Op::Transient(w, secs) => {
                if let Some(id) = self.pick(w) {
                    let at = self.clock.now() + time::Duration::seconds(secs);
                    self.store()
                        .record_transient(&id, at, "test")
                        .expect("transient");
                }
            }
            Op::ResetUpload(w, k) => {
                if let Some(id) = self.pick(w) {
                    self.store()
                        .reset_upload(&id, PartKind::ALL[k])
                        .expect("reset")
                }
            }
            Op::SetAside => {
                let before = self.store().list().expect("list");
                self.store = None;
                let dir = self.fx.store_dir();
                let target = Store::set_aside(&dir).expect("set aside");
                for e in std::fs::read_dir(&target)
                    .expect("set-aside folder")
                    .flatten()
                {
                    std::fs::rename(e.path(), dir.join(e.file_name())).expect("move back");
                }
                self.reopen();
                assert_eq!(
                    self.store().list().expect("list"),
                    before,
                    "set-aside changed the queue"
                );
            }
            Op::Advance(min) => rt.block_on(tokio::time::advance(Duration::from_secs(min * 60))),
        }
    }

    fn check(&mut self) {
        let ids = self.ids.clone();
        let counted = self.peer.state.lock().expect("peer").counted.len();
        let store = self.store();
        let list = store.list().expect("list");
        assert_eq!(list.len(), ids.len(), "the queue lost or gained captures");
        let receipts = store.receipts().expect("receipts");
        let status = store.status().expect("status");
        let n = |s: State| list.iter().filter(|c| c.state == s).count() as u64;
        assert_eq!(
            (
                status.captured,
                status.uploading,
                status.committed,
                status.quarantined,
                status.purged
            ),
            (
                n(State::Captured),
                n(State::Uploading),
                n(State::Committed),
                n(State::Quarantined),
                n(State::Purged)
            )
        );
        assert_eq!(
            store.pending_count().expect("pending"),
            status.captured + status.uploading
        );
        for c in &list {
            if matches!(c.state, State::Purged | State::Committed) {
                assert!(
                    receipts.iter().any(|r| r.capture_id == c.id && r.verified),
                    "purged without a receipt"
                );
            } else {
                for kind in PartKind::ALL {
                    store
                        .read_part(&c.id, kind, &mut std::io::sink())
                        .expect("an unsent capture still opens");
                }
            }
        }
        let mine: HashSet<_> = receipts
            .iter()
            .filter(|r| r.result == ReceiptResult::Counted)
            .filter_map(|r| ids.get(&r.capture_id))
            .collect();
        let counted_receipts = receipts
            .iter()
            .filter(|r| r.result == ReceiptResult::Counted)
            .count();
        assert_eq!(mine.len(), counted_receipts, "a citizen counted twice");
        assert!(
            counted_receipts <= counted,
            "a counted receipt the peer did not count"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn the_queue_keeps_its_invariants(ops in prop::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
        let _inside = rt.enter();
        let mut m = Machine::new();
        for op in &ops {
            m.apply(&rt, op);
            m.check();
        }
        // An honest peer drains the queue once quarantined captures are retried.
        m.apply(&rt, &Op::Advance(120));
        // A retry is refused as a duplicate while another capture of the citizen is live
        // (issue 17): that capture stays quarantined, and is not left undelivered.
        for c in m.store().list().expect("list") {
            if c.state == State::Quarantined {
                match m.store().retry_quarantined(&c.id) {
                    Ok(()) | Err(Error::Duplicate { .. }) => {}
                    Err(e) => panic!("retry: {e}"),
                }
            }
        }
        m.sync(&rt, 0, false, Duration::from_secs(3600));
        m.check();
        let list = m.store().list().expect("list");
        let left = list
            .iter()
            .filter(|c| c.state != State::Purged)
            .filter(|c| !(c.state == State::Quarantined && m.live_other(&c.id)))
            .count();
        prop_assert_eq!(left, 0, "an honest peer left captures undelivered");
    }
}
