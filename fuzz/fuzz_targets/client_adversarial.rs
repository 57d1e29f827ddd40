//! Target 5: the sync client and engine against an adversarial endpoint.
//!
//! A real store (two captures, activated) syncs through a `Transport` whose answers come from
//! the fuzzer: arbitrary statuses, headers (Location, Upload-Offset, Retry-After) and bodies,
//! transport failures and slow answers, documented refusals, and receipts that look valid but
//! are signed with another key or name another capture, process, device, key id or part
//! hashes. When the script runs out the endpoint answers honestly, and a second, honest run
//! follows (time moved on, quarantined captures retried).
//!
//! Invariants: no panic and no error from the run; every request targets a `/v1/` path, is
//! bounded (response limit, timeout) and a PATCH carries exactly the part's own bytes at its
//! offset; a capture is purged only after a receipt validly signed for exactly that capture
//! (id, process, device, parts, key) arrived, and its receipt is kept; every other capture is
//! still held and opens; the run ends within its budget; after the honest run nothing is left.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_fuzz::{VirtualClock, check, paused_runtime, world};
use apoyo_sync::testkit::crypto;
use apoyo_sync::testkit::sync::transport::{
    Method, Request, Response, SendFuture, Transport, TransportError,
};
use apoyo_sync::testkit::sync::{SyncOptions, engine};
use apoyo_sync::wire::{
    self as protocol, CommitRequest, ErrorBody, ProcessList, Reason, Receipt, ReceiptPart,
    ReceiptResult, SignedReceipt, limits,
};
use apoyo_sync::{CaptureId, PartKind, State};
use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary, Clone)]
enum Body {
    Empty,
    Raw(Vec<u8>),
    Error { reason: u8, detail: String },
}

#[derive(Debug, Arbitrary, Clone, Copy)]
struct ReceiptSpec {
    wrong_key: bool,
    other_capture: bool,
    other_process: bool,
    other_device: bool,
    wrong_part: Option<u8>,
    drop_part: bool,
    wrong_key_id: bool,
    duplicate: bool,
    bad_signature: bool,
    /// v1.1: no key certificate (a v1 endpoint's receipt), or another collector, capture
    /// time or sealed key than committed.
    no_cert: bool,
    other_collector: bool,
    other_captured_at: bool,
    other_sealed_key: bool,
    status: u8,
}

#[derive(Debug, Arbitrary, Clone)]
enum Reply {
    Honest,
    Status {
        code: u16,
        headers: Vec<(u8, String)>,
        body: Body,
    },
    Fail(u8),
    Slow {
        secs: u16,
    },
    Receipt(ReceiptSpec),
    /// A receipt bent in exactly one way (with `Receipt`, twelve independent bends rarely
    /// leave only one set, and a check that is missing shows only when it is alone).
    OneBend {
        bend: Bend,
        status: u8,
    },
    Created {
        location: String,
        expires: Option<String>,
    },
    Offset {
        status: u16,
        offset: OffsetSpec,
    },
}

/// One way to bend a receipt; see [`ReceiptSpec`].
#[derive(Debug, Arbitrary, Clone, Copy)]
enum Bend {
    WrongKey,
    OtherCapture,
    OtherProcess,
    OtherDevice,
    WrongPart(u8),
    DropPart,
    WrongKeyId,
    Duplicate,
    BadSignature,
    NoCert,
    OtherCollector,
    OtherCapturedAt,
    OtherSealedKey,
}

impl ReceiptSpec {
    /// A genuine receipt answered with the status `status` picks.
    fn genuine(status: u8) -> Self {
        ReceiptSpec {
            wrong_key: false,
            other_capture: false,
            other_process: false,
            other_device: false,
            wrong_part: None,
            drop_part: false,
            wrong_key_id: false,
            duplicate: false,
            bad_signature: false,
            no_cert: false,
            other_collector: false,
            other_captured_at: false,
            other_sealed_key: false,
            status,
        }
    }

    /// A genuine receipt, then bent in the one way `bend` says.
    fn one(bend: Bend, status: u8) -> Self {
        let mut s = Self::genuine(status);
        match bend {
            Bend::WrongKey => s.wrong_key = true,
            Bend::OtherCapture => s.other_capture = true,
            Bend::OtherProcess => s.other_process = true,
            Bend::OtherDevice => s.other_device = true,
            Bend::WrongPart(p) => s.wrong_part = Some(p),
            Bend::DropPart => s.drop_part = true,
            Bend::WrongKeyId => s.wrong_key_id = true,
            Bend::Duplicate => s.duplicate = true,
            Bend::BadSignature => s.bad_signature = true,
            Bend::NoCert => s.no_cert = true,
            Bend::OtherCollector => s.other_collector = true,
            Bend::OtherCapturedAt => s.other_captured_at = true,
            Bend::OtherSealedKey => s.other_sealed_key = true,
        }
        s
    }
}

/// The commit inside a v1.1 device-signed commit body, if it decodes.
fn decode_commit(body: &[u8]) -> Option<CommitRequest> {
    let sc =
        protocol::decode::<protocol::SignedCommit>(body, limits::MAX_COMMIT_BYTES, "signed commit")
            .ok()?;
    protocol::decode::<CommitRequest>(&sc.commit, limits::MAX_COMMIT_BYTES, "commit").ok()
}

#[derive(Debug, Arbitrary, Clone)]
enum OffsetSpec {
    Right,
    Delta(i32),
    Raw(String),
    Missing,
}

const HEADER_NAMES: [&str; 6] = [
    "location",
    "upload-offset",
    "retry-after",
    "upload-expires",
    "content-type",
    "upload-length",
];

/// What the honest side remembers.
struct Upload {
    capture: CaptureId,
    kind: PartKind,
    length: u64,
    bytes: Vec<u8>,
}

struct Shared {
    script: Vec<Reply>,
    next: usize,
    uploads: HashMap<String, Upload>,
    /// (location handed out) → (capture, kind), for every 201 answered.
    created: Vec<(String, CaptureId, PartKind)>,
    genuine: HashSet<CaptureId>,
    n: u32,
}

struct Adversary {
    s: Mutex<Shared>,
    truth: HashMap<(CaptureId, PartKind), Vec<u8>>,
    process: HashMap<CaptureId, String>,
    device_id: String,
    key_id: String,
    signer: apoyo_sync::testkit::crypto::receipt::ReceiptSigner,
    /// The INE root's certificate of `signer`'s key, and a time within its validity.
    cert: protocol::SignedKeyCert,
    counted_at: time::OffsetDateTime,
    processes: Vec<apoyo_sync::Process>,
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn error(status: u16, reason: Reason) -> Response {
    let body = protocol::encode(&ErrorBody {
        v: 1,
        reason,
        detail: "fuzz".into(),
    })
    .expect("encode");
    Response {
        status,
        headers: Vec::new(),
        body,
    }
}

fn parse_meta(r: &Request) -> Option<(CaptureId, PartKind)> {
    let meta = header(r, "upload-metadata")?;
    let mut id = None;
    let mut kind = None;
    for pair in meta.split(',') {
        let (k, v) = pair.trim().split_once(' ')?;
        let v = String::from_utf8(B64.decode(v).ok()?).ok()?;
        match k {
            "capture_id" => id = v.parse().ok(),
            "kind" => kind = PartKind::from_name(&v),
            _ => {}
        }
    }
    Some((id?, kind?))
}

impl Adversary {
    /// Checks what the client sent, before answering.
    fn check_request(&self, s: &Shared, r: &Request, limit: usize) {
        check!(
            r.path.starts_with("/v1/"),
            "request to {:?}, outside the endpoint's /v1/",
            r.path
        );
        check!(
            !r.path.contains("://") && !r.path.contains('@'),
            "request path {:?} names another host",
            r.path
        );
        check!(limit <= limits::MAX_CATALOG_BYTES, "response limit {limit}");
        check!(
            r.timeout <= apoyo_sync::testkit::sync::client::REQUEST_TIMEOUT,
            "timeout {:?}",
            r.timeout
        );
        if r.method == Method::Patch {
            let Some((_, id, kind)) = s
                .created
                .iter()
                .rev()
                .find(|(loc, _, _)| loc.ends_with(&r.path))
            else {
                return;
            };
            let truth = &self.truth[&(*id, *kind)];
            let off: u64 = header(r, "upload-offset")
                .and_then(|v| v.parse().ok())
                .expect("PATCH without Upload-Offset");
            let end = off as usize + r.body.len();
            check!(
                end <= truth.len(),
                "PATCH past the part's end ({end} > {})",
                truth.len()
            );
            check!(
                r.body == truth[off as usize..end],
                "PATCH at {off} carries other bytes than the part's"
            );
        }
    }

    fn honest(&self, s: &mut Shared, r: &Request) -> Response {
        let path = r.path.as_str();
        match r.method {
            Method::Get if path == "/v1/processes" => {
                let body = protocol::encode(&ProcessList {
                    v: 1,
                    processes: self.processes.clone(),
                })
                .expect("encode");
                Response {
                    status: 200,
                    headers: Vec::new(),
                    body,
                }
            }
            Method::Post if path == "/v1/uploads" => {
                let (Some((capture, kind)), Some(length)) = (
                    parse_meta(r),
                    header(r, "upload-length").and_then(|v| v.parse().ok()),
                ) else {
                    return error(400, Reason::Malformed);
                };
                s.n += 1;
                let loc = format!("/v1/uploads/h{}", s.n);
                s.uploads.insert(
                    loc.clone(),
                    Upload {
                        capture,
                        kind,
                        length,
                        bytes: Vec::new(),
                    },
                );
                s.created.push((loc.clone(), capture, kind));
                Response {
                    status: 201,
                    headers: vec![("location".into(), loc)],
                    body: Vec::new(),
                }
            }
            Method::Head => match s.uploads.get(path) {
                Some(u) => Response {
                    status: 200,
                    headers: vec![("upload-offset".into(), u.bytes.len().to_string())],
                    body: Vec::new(),
                },
                None => error(404, Reason::NotFound),
            },
            Method::Patch => match s.uploads.get_mut(path) {
                Some(u)
                    if header(r, "upload-offset") == Some(u.bytes.len().to_string().as_str()) =>
                {
                    if u.bytes.len() as u64 + r.body.len() as u64 > u.length {
                        return error(413, Reason::TooLarge);
                    }
                    u.bytes.extend_from_slice(&r.body);
                    Response {
                        status: 204,
                        headers: vec![("upload-offset".into(), u.bytes.len().to_string())],
                        body: Vec::new(),
                    }
                }
                Some(_) => error(409, Reason::Other),
                None => error(404, Reason::NotFound),
            },
            Method::Put if path.starts_with("/v1/supports/") => {
                let Some(c) = decode_commit(&r.body) else {
                    return error(400, Reason::Malformed);
                };
                let held = c.parts.iter().all(|p| {
                    s.uploads.get(&p.upload).is_some_and(|u| {
                        u.capture == c.capture_id
                            && u.kind == p.kind
                            && u.bytes == self.truth[&(u.capture, u.kind)]
                            && crypto::sha256(&u.bytes) == p.sha256
                    })
                });
                if !held || c.parts.len() != 5 {
                    return error(400, Reason::UploadMissing);
                }
                self.receipt(s, &c, ReceiptSpec::genuine(1))
            }
            _ => error(404, Reason::NotFound),
        }
    }

    /// A receipt answering commit `c`, as `spec` bends it; notes whether it is genuine.
    fn receipt(&self, s: &mut Shared, c: &CommitRequest, spec: ReceiptSpec) -> Response {
        let other = self
            .truth
            .keys()
            .map(|(id, _)| *id)
            .find(|id| *id != c.capture_id)
            .unwrap_or(c.capture_id);
        let capture = if spec.other_capture {
            other
        } else {
            c.capture_id
        };
        // The parts are the committed capture's: a receipt for another capture id must be
        // refused for its id alone.
        let mut parts: Vec<ReceiptPart> = PartKind::ALL
            .into_iter()
            .map(|kind| ReceiptPart {
                kind,
                sha256: self
                    .truth
                    .get(&(c.capture_id, kind))
                    .map(|b| crypto::sha256(b))
                    .unwrap_or([0; 32]),
            })
            .collect();
        if let Some(p) = spec.wrong_part {
            parts[p as usize % 5].sha256[0] ^= 1;
        }
        if spec.drop_part {
            parts.pop();
        }
        let r = Receipt {
            v: 1,
            capture_id: capture,
            process_id: if spec.other_process {
                "consulta-cdmx-demo".into()
            } else {
                self.process.get(&capture).cloned().unwrap_or_default()
            },
            device_id: if spec.other_device {
                "0123456789abcdef0123456789abcdef".into()
            } else {
                self.device_id.clone()
            },
            result: if spec.duplicate {
                ReceiptResult::Duplicate
            } else {
                ReceiptResult::Counted
            },
            first_capture_id: spec.duplicate.then_some(other),
            parts,
            counted_at: self.counted_at,
            endpoint_key_id: if spec.wrong_key_id {
                "ffffffffffffffff".into()
            } else {
                self.key_id.clone()
            },
            collector: if spec.other_collector {
                apoyo_sync::Collector::Auxiliar("AUX-0001".into())
            } else {
                c.collector.clone()
            },
            captured_at: if spec.other_captured_at {
                c.captured_at + time::Duration::seconds(1)
            } else {
                c.captured_at
            },
            sealed_key_sha256: if spec.other_sealed_key {
                [0; 32]
            } else {
                crypto::sha256(&c.sealed_key)
            },
        };
        let bytes = protocol::encode(&r).expect("encode");
        let input = protocol::receipt_signing_input(&bytes);
        let mut sig = if spec.wrong_key {
            apoyo_sync::testkit::crypto::receipt::ReceiptSigner::from_bytes(&[7; 32]).sign(&input)
        } else {
            self.signer.sign(&input)
        };
        if spec.bad_signature {
            sig[5] ^= 1;
        }
        let genuine = !spec.wrong_key
            && !spec.bad_signature
            && !spec.other_capture
            && !spec.other_process
            && !spec.other_device
            && spec.wrong_part.is_none()
            && !spec.drop_part
            && !spec.wrong_key_id
            && !spec.no_cert
            && !spec.other_collector
            && !spec.other_captured_at
            && !spec.other_sealed_key;
        let status = [201, 200, 202, 400][spec.status as usize % 4];
        if genuine && (status == 200 || status == 201) {
            s.genuine.insert(c.capture_id);
        }
        let body = protocol::encode(&SignedReceipt {
            receipt: bytes,
            signature: sig.to_vec(),
            key_cert: (!spec.no_cert).then(|| self.cert.clone()),
        })
        .expect("encode");
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn scripted(
        &self,
        s: &mut Shared,
        r: &Request,
        reply: Reply,
    ) -> Result<Response, TransportError> {
        Ok(match reply {
            Reply::Honest | Reply::Slow { .. } => self.honest(s, r),
            Reply::Fail(k) => {
                return Err([
                    TransportError::Connect,
                    TransportError::Timeout,
                    TransportError::Broken("fuzz".into()),
                    TransportError::Tls,
                ][k as usize % 4]
                    .clone());
            }
            Reply::Status {
                code,
                headers,
                body,
            } => Response {
                status: code,
                headers: headers
                    .into_iter()
                    .map(|(n, v)| (HEADER_NAMES[n as usize % HEADER_NAMES.len()].to_string(), v))
                    .collect(),
                body: match body {
                    Body::Empty => Vec::new(),
                    Body::Raw(b) => b,
                    Body::Error { reason, detail } => protocol::encode(&ErrorBody {
                        v: 1,
                        reason: Reason::ALL[reason as usize % Reason::ALL.len()],
                        detail,
                    })
                    .expect("encode"),
                },
            },
            Reply::Receipt(spec) => match decode_commit(&r.body) {
                Some(c) => self.receipt(s, &c, spec),
                None => self.honest(s, r),
            },
            Reply::OneBend { bend, status } => match decode_commit(&r.body) {
                Some(c) => self.receipt(s, &c, ReceiptSpec::one(bend, status)),
                None => self.honest(s, r),
            },
            Reply::Created { location, expires } => {
                if let Some((id, kind)) = parse_meta(r) {
                    s.created.push((location.clone(), id, kind));
                }
                let mut headers = vec![("location".to_string(), location)];
                headers.extend(expires.map(|e| ("upload-expires".to_string(), e)));
                Response {
                    status: 201,
                    headers,
                    body: Vec::new(),
                }
            }
            Reply::Offset { status, offset } => {
                let right = s.uploads.get(&r.path).map_or(0, |u| u.bytes.len() as i64);
                let value = match offset {
                    OffsetSpec::Right => Some(right.to_string()),
                    OffsetSpec::Delta(d) => Some((right + i64::from(d)).to_string()),
                    OffsetSpec::Raw(v) => Some(v),
                    OffsetSpec::Missing => None,
                };
                Response {
                    status,
                    headers: value
                        .map(|v| ("upload-offset".to_string(), v))
                        .into_iter()
                        .collect(),
                    body: Vec::new(),
                }
            }
        })
    }
}

impl Transport for Adversary {
    fn send(&self, r: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let reply = {
                let mut s = self.s.lock().expect("lock");
                self.check_request(&s, &r, limit);
                let reply = s.script.get(s.next).cloned().unwrap_or(Reply::Honest);
                s.next = s.next.saturating_add(1);
                reply
            };
            if let Reply::Slow { secs } = reply {
                let wait = Duration::from_secs(u64::from(secs));
                if wait >= r.timeout {
                    tokio::time::sleep(r.timeout).await;
                    return Err(TransportError::Timeout);
                }
                tokio::time::sleep(wait).await;
            }
            let mut s = self.s.lock().expect("lock");
            let resp = self.scripted(&mut s, &r, reply)?;
            if resp.body.len() > limit {
                return Err(TransportError::TooLarge(limit));
            }
            Ok(resp)
        })
    }
}

const BUDGET: Duration = Duration::from_secs(20 * 60);

fuzz_target!(|script: Vec<Reply>| {
    if script.len() > 64 {
        return;
    }
    let t = world::template();
    let dir = apoyo_fuzz::tempdir();
    paused_runtime().block_on(async {
        let clock = VirtualClock::new(t.t0).shared();
        let mut store = t.store(dir.path(), clock);
        let mut truth = HashMap::new();
        let mut process = HashMap::new();
        for id in &t.store_captures {
            process.insert(*id, store.info(id).expect("info").process_id);
            for p in store.parts(id).expect("parts") {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(
                    &mut store.part_reader(id, &p).expect("reader"),
                    &mut bytes,
                )
                .expect("read");
                truth.insert((*id, p.kind), bytes);
            }
        }
        let act = store.activation().expect("activation").expect("activated");
        let adversary = Arc::new(Adversary {
            s: Mutex::new(Shared {
                script,
                next: 0,
                uploads: HashMap::new(),
                created: Vec::new(),
                genuine: HashSet::new(),
                n: 0,
            }),
            truth,
            process,
            device_id: store.device_id().to_string(),
            key_id: act.receipt_key_id.clone(),
            signer: t.receipt_signer(),
            cert: t.receipt_cert(),
            counted_at: t.t0,
            processes: t.processes.clone(),
        });
        let opts = SyncOptions {
            budget: BUDGET,
            seed: Some(1),
            ..SyncOptions::default()
        };
        let started = tokio::time::Instant::now();
        let report = engine::run(&mut store, &adversary, opts.clone()).await;
        let report = report.unwrap_or_else(|e| panic!("invariant violated: the run failed: {e}"));
        check!(
            started.elapsed()
                <= BUDGET
                    + apoyo_sync::testkit::sync::client::REQUEST_TIMEOUT
                    + Duration::from_secs(1),
            "the run took {:?}",
            started.elapsed()
        );
        check_held(&store, &adversary, &t.store_captures);
        // Honest from here on: time passes, quarantined captures are retried, all must drain.
        adversary.s.lock().expect("lock").next = usize::MAX;
        tokio::time::advance(Duration::from_secs(2 * 3600)).await;
        for c in store.list().expect("list") {
            if c.state == State::Quarantined {
                store.retry_quarantined(&c.id).expect("retry");
            }
        }
        let _ = report;
        let again = engine::run(
            &mut store,
            &adversary,
            SyncOptions {
                budget: Duration::from_secs(3600),
                ..opts
            },
        )
        .await
        .expect("honest run");
        check_held(&store, &adversary, &t.store_captures);
        check!(
            again.pending == 0
                && store
                    .list()
                    .expect("list")
                    .iter()
                    .all(|c| c.state == State::Purged),
            "an honest endpoint could not drain the queue: {again:?}"
        );
    });
});

/// Every capture is either purged after a genuine receipt (kept) or still held and readable.
fn check_held(store: &apoyo_sync::testkit::Store, adv: &Adversary, ids: &[CaptureId]) {
    let list = store.list().expect("list");
    check!(list.len() == ids.len(), "captures vanished from the queue");
    let genuine = adv.s.lock().expect("lock").genuine.clone();
    let receipts: Vec<CaptureId> = store
        .receipts()
        .expect("receipts")
        .iter()
        .map(|r| r.capture_id)
        .collect();
    for c in &list {
        if c.state == State::Purged || c.state == State::Committed {
            check!(
                genuine.contains(&c.id),
                "capture {} {:?} without a genuine receipt for it",
                c.id,
                c.state
            );
            check!(
                receipts.contains(&c.id),
                "capture {} purged without its receipt kept",
                c.id
            );
        } else {
            for kind in PartKind::ALL {
                let r = store.read_part(&c.id, kind, &mut std::io::sink());
                check!(
                    r.is_ok(),
                    "capture {} ({:?}) lost its {} part: {r:?}",
                    c.id,
                    c.state,
                    kind.name()
                );
            }
        }
    }
}
