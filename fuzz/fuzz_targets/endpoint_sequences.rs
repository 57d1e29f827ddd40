//! Target 4: the endpoint's handlers driven by arbitrary request sequences from several devices
//! against one in-process endpoint (its axum `Router`, a real SQLite file and blob folder).
//!
//! Three activated devices upload (whole parts, or pieces), commit their own or each other's
//! captures with tweaks, touch each other's uploads, replay commits, register and activate new
//! devices, send arbitrary bodies to every route, and let time pass. After every step:
//! - no 5xx, and every refusal is a documented CBOR `ErrorBody`;
//! - no citizen is counted twice for a process: a counted receipt is the first for its
//!   (process, citizen), a duplicate names the counted capture, and the endpoint's stats agree;
//! - one device can never read (HEAD), patch, delete or commit another device's uploads, nor
//!   get a receipt naming another device, nor a receipt for parts other than the real ones;
//! - a commit's answer is the same bytes on every replay;
//! - storage stays bounded: no upload file outlives its upload, none exceeds its length.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use apoyo_fuzz::bundle::Bundle;
use apoyo_fuzz::router::{Answer, call};
use apoyo_fuzz::{VirtualClock, check, paused_runtime, world};
use apoyo_sync::testkit::crypto::{self, DeviceIdentity, Ed25519Secret, IneRoot, PartSealer};
use apoyo_sync::wire::{
    self as protocol, ErrorBody, Provider, ReceiptResult, RegisterRequest, SignedReceipt, trust,
};
use apoyo_sync::{CaptureId, PartKind};
use arbitrary::Arbitrary;
use axum::Router;
use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Tweak {
    None,
    WrongHash(u8),
    WrongLength(u8),
    SwapUploads(u8, u8),
    DropPart,
    OtherCaptureId(u8),
    Version(u8),
    ProcessId(u8),
    BadIdempotencyKey,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// Device `dev` uploads part `part` of bundle `bundle` of device `owner`, in pieces.
    Upload {
        dev: u8,
        owner: u8,
        bundle: u8,
        part: u8,
        piece: u16,
    },
    /// Device `dev` uploads all five parts of its own bundle.
    UploadAll {
        dev: u8,
        bundle: u8,
    },
    /// Device `dev` commits bundle (`owner`, `bundle`) naming, per part, the newest matching
    /// upload of `from` (a device), with a tweak.
    Commit {
        dev: u8,
        owner: u8,
        bundle: u8,
        from: u8,
        tweak: Tweak,
    },
    /// Device `dev` touches upload slot `slot` (HEAD, PATCH or DELETE).
    Touch {
        dev: u8,
        slot: u8,
        how: u8,
    },
    Replay {
        which: u8,
    },
    Register {
        email: String,
        mangle: Option<u8>,
    },
    Activate {
        which: u8,
        code: Option<String>,
    },
    Raw {
        dev: Option<u8>,
        method: u8,
        route: u8,
        body: Vec<u8>,
        cbor: bool,
    },
    Advance {
        minutes: u16,
    },
}

struct Slot {
    owner: usize,
    path: String,
    /// (bundle owner, bundle index, part kind) whose bytes it holds.
    holds: (usize, usize, PartKind),
    length: u64,
    offset: u64,
    deleted: bool,
    /// Holds other bytes than the part (a stray PATCH landed in it).
    dirty: bool,
}

struct Run {
    router: Router,
    tokens: Vec<String>,
    ids: Vec<String>,
    /// Each device's commit signing key (registered at its activation, v1.1).
    signing: Vec<Ed25519Secret>,
    /// The INE root every receipt must chain to.
    root: &'static IneRoot,
    bundles: &'static [Vec<Bundle>],
    slots: Vec<Slot>,
    /// (process, citizen) → the counted capture.
    counted: HashMap<(String, usize), CaptureId>,
    /// Answers given to 2xx commits: (device, capture) → (status, body, the request bytes).
    answers: Vec<(usize, u16, Vec<u8>, Vec<u8>, CaptureId)>,
    registered: Vec<(DeviceIdentity, Ed25519Secret, String)>,
    /// Capture ids some tweaked or foreign commit reached the endpoint with (its recorded
    /// answer may stand in the way of an honest one later).
    attempted: std::collections::HashSet<CaptureId>,
    blobs: std::path::PathBuf,
}

const CBOR_ROUTES: [&str; 6] = [
    "/v1/devices",
    "/v1/devices/activate",
    "/v1/uploads",
    "/v1/processes",
    "/v1/supports/",
    "/v1/uploads/",
];

fn auth(token: &str) -> Vec<(String, String)> {
    vec![
        ("authorization".into(), format!("Bearer {token}")),
        ("tus-resumable".into(), "1.0.0".into()),
    ]
}

impl Run {
    async fn send(
        &self,
        m: Method,
        path: &str,
        h: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Option<Answer> {
        let a = call(&self.router, m.clone(), path, &h, body, None).await?;
        check!(a.status < 500, "{m} {path} answered {}", a.status);
        if a.status >= 400 && m != Method::HEAD {
            let e: Result<ErrorBody, _> = protocol::decode(&a.body, 1 << 16, "error");
            check!(e.is_ok(), "{m} {} without an ErrorBody", a.status);
        }
        Some(a)
    }

    fn dev(&self, d: u8) -> usize {
        d as usize % self.tokens.len()
    }

    async fn upload(
        &mut self,
        dev: usize,
        holds: (usize, usize, PartKind),
        piece: u16,
    ) -> Option<usize> {
        let b = &self.bundles[holds.0][holds.1];
        let bytes = b.part(holds.2).to_vec();
        let meta = format!(
            "capture_id {},kind {}",
            B64.encode(b.id.to_string()),
            B64.encode(holds.2.name())
        );
        let mut h = auth(&self.tokens[dev]);
        h.push(("upload-length".into(), bytes.len().to_string()));
        h.push(("upload-metadata".into(), meta));
        let a = self
            .send(Method::POST, "/v1/uploads", h, Vec::new())
            .await?;
        if a.status != 201 {
            check!(a.status == 429, "a correct creation answered {}", a.status);
            return None;
        }
        let path = a.header("location")?.to_string();
        self.slots.push(Slot {
            owner: dev,
            path: path.clone(),
            holds,
            length: bytes.len() as u64,
            offset: 0,
            deleted: false,
            dirty: false,
        });
        let slot = self.slots.len() - 1;
        let piece = (piece as usize).clamp(512, 64 * 1024);
        for chunk in bytes.chunks(piece) {
            let mut h = auth(&self.tokens[dev]);
            h.push(("content-type".into(), protocol::tus::OFFSET_STREAM.into()));
            h.push(("upload-offset".into(), self.slots[slot].offset.to_string()));
            h.push((
                "upload-checksum".into(),
                format!("sha256 {}", B64.encode(crypto::sha256(chunk))),
            ));
            let a = self.send(Method::PATCH, &path, h, chunk.to_vec()).await?;
            check!(a.status == 204, "a correct PATCH answered {}", a.status);
            self.slots[slot].offset += chunk.len() as u64;
        }
        Some(slot)
    }

    async fn commit(&mut self, dev: usize, owner: usize, bi: usize, from: usize, tweak: Tweak) {
        let b = &self.bundles[owner][bi];
        // Per part, the newest live complete upload of `from` holding exactly that part.
        let mut uploads = Vec::new();
        for kind in PartKind::ALL {
            let s = self.slots.iter().rev().find(|s| {
                s.owner == from
                    && s.holds == (owner, bi, kind)
                    && !s.deleted
                    && !s.dirty
                    && s.offset == s.length
            });
            uploads.push(s.map_or_else(
                || "/v1/uploads/00000000000000000000000000000000".to_string(),
                |s| s.path.clone(),
            ));
        }
        let mut req = b.commit(&uploads);
        let mut id = b.id;
        let mut key_ok = true;
        match tweak {
            Tweak::None => {}
            Tweak::WrongHash(p) => req.parts[p as usize % 5].sha256[0] ^= 1,
            Tweak::WrongLength(p) => req.parts[p as usize % 5].length += 1,
            Tweak::SwapUploads(x, y) => {
                let (x, y) = (x as usize % 5, y as usize % 5);
                let u = req.parts[x].upload.clone();
                req.parts[x].upload = req.parts[y].upload.clone();
                req.parts[y].upload = u;
            }
            Tweak::DropPart => {
                req.parts.pop();
            }
            Tweak::OtherCaptureId(o) => {
                id = self.bundles[o as usize % self.bundles.len()][o as usize % 4].id;
                req.capture_id = id;
            }
            Tweak::Version(v) => req.v = v,
            Tweak::ProcessId(p) => {
                req.process_id =
                    ["revocacion-2022", "consulta-cdmx-demo", "", "x"][p as usize % 4].into()
            }
            Tweak::BadIdempotencyKey => key_ok = false,
        }
        // Signed by the sending device's own key: a device committing another's capture
        // signs as itself (it holds no other key).
        let signed = trust::sign_commit(&self.signing[dev], &req).expect("sign commit");
        let body = protocol::encode(&signed).expect("encode");
        let mut h = auth(&self.tokens[dev]);
        h.push(("content-type".into(), protocol::CBOR.into()));
        h.push((
            "idempotency-key".into(),
            if key_ok { id.to_string() } else { "x".into() },
        ));
        let Some(a) = self
            .send(Method::PUT, &format!("/v1/supports/{id}"), h, body.clone())
            .await
        else {
            return;
        };
        let honest = matches!(tweak, Tweak::None) && dev == owner && from == owner;
        let all_held = uploads
            .iter()
            .all(|u| !u.ends_with("/00000000000000000000000000000000"));
        let clean = !self.attempted.contains(&id);
        if !honest {
            // A recorded rejection may consume the uploads it names, and stands for its id.
            self.attempted.insert(id);
            self.attempted.insert(self.bundles[owner][bi].id);
        }
        if honest && all_held && clean {
            check!(
                a.status == 200 || a.status == 201,
                "an honest commit answered {}",
                a.status
            );
        }
        if a.status == 200 || a.status == 201 {
            self.on_receipt(dev, owner, bi, &a, &req, body).await;
        }
    }

    async fn on_receipt(
        &mut self,
        dev: usize,
        owner: usize,
        bi: usize,
        a: &Answer,
        req: &protocol::CommitRequest,
        body: Vec<u8>,
    ) {
        let b = &self.bundles[owner][bi];
        check!(
            dev == owner,
            "device {dev} got a receipt for device {owner}'s capture"
        );
        let signed: SignedReceipt =
            protocol::decode(&a.body, 1 << 16, "receipt").expect("a receipt");
        // The device's own check before deletion: chain to the INE root, signature, validity,
        // and every field equal to the commit it answers.
        let r = match trust::verify_receipt(self.root, &signed, req, &self.ids[dev]) {
            Ok(r) => r,
            Err(e) => panic!("invariant violated: a 2xx receipt fails the device check: {e:?}"),
        };
        check!(
            r.capture_id == b.id && req.capture_id == b.id,
            "receipt for another capture"
        );
        check!(r.device_id == self.ids[dev], "receipt names another device");
        check!(r.process_id == b.process_id, "receipt for another process");
        for (kind, ct) in &b.parts {
            check!(
                r.parts
                    .iter()
                    .any(|p| p.kind == *kind && p.sha256 == crypto::sha256(ct)),
                "receipt part hash is not the real ciphertext's"
            );
        }
        let key = (b.process_id.clone(), b.citizen);
        let replay = self.answers.iter().find(|x| x.4 == b.id);
        if let Some(prev) = replay {
            check!(
                prev.0 == dev && prev.1 == a.status && prev.2 == a.body,
                "a replay got another answer"
            );
            return;
        }
        match (r.result, a.status) {
            (ReceiptResult::Counted, 201) => {
                check!(
                    !self.counted.contains_key(&key),
                    "citizen {key:?} counted twice"
                );
                self.counted.insert(key, b.id);
            }
            (ReceiptResult::Duplicate, 200) => {
                check!(
                    self.counted.get(&key) == r.first_capture_id.as_ref(),
                    "duplicate names {:?}, counted {:?}",
                    r.first_capture_id,
                    self.counted.get(&key)
                );
            }
            other => panic!("invariant violated: receipt {other:?}"),
        }
        // The committed uploads are consumed.
        for s in self
            .slots
            .iter_mut()
            .filter(|s| req.parts.iter().any(|p| p.upload == s.path))
        {
            s.deleted = true;
        }
        self.answers
            .push((dev, a.status, a.body.clone(), body, b.id));
    }

    async fn touch(&mut self, dev: usize, slot: u8, how: u8) {
        if self.slots.is_empty() {
            return;
        }
        let i = slot as usize % self.slots.len();
        let (path, owner) = (self.slots[i].path.clone(), self.slots[i].owner);
        let mut h = auth(&self.tokens[dev]);
        let m = match how % 3 {
            0 => Method::HEAD,
            1 => {
                h.push(("content-type".into(), protocol::tus::OFFSET_STREAM.into()));
                h.push(("upload-offset".into(), self.slots[i].offset.to_string()));
                Method::PATCH
            }
            _ => Method::DELETE,
        };
        let body = if m == Method::PATCH {
            vec![0u8; 1]
        } else {
            Vec::new()
        };
        let Some(a) = self.send(m.clone(), &path, h, body).await else {
            return;
        };
        if owner != dev || self.slots[i].deleted {
            check!(
                a.status == 404,
                "device {dev} {m} on another's (or a gone) upload: {}",
                a.status
            );
        } else if m == Method::DELETE {
            // 404 when a recorded rejection already consumed it.
            check!(
                a.status == 204 || a.status == 404,
                "DELETE of its own upload: {}",
                a.status
            );
            self.slots[i].deleted = true;
        } else if m == Method::PATCH && a.status == 204 {
            self.slots[i].offset += 1;
            self.slots[i].dirty = true;
        }
    }

    async fn register(&mut self, email: &str, mangle: Option<u8>) {
        let identity = DeviceIdentity::generate().expect("identity");
        let ep = world::template().endpoint_public();
        let rid = CaptureId::new_v7(world::template().t0);
        let dk = crypto::random_key().expect("key");
        let mut front = Vec::new();
        PartSealer::new(&dk, rid.as_bytes(), PartKind::Front)
            .and_then(|mut s| s.seal_to(&apoyo_fuzz::bundle::jpeg(64, 3), &mut front))
            .expect("seal");
        if let Some(m) = mangle {
            let n = front.len();
            front[m as usize % n] ^= 0x40;
        }
        let req = RegisterRequest {
            v: 1,
            device_public: identity.public(),
            email: email.into(),
            provider: Provider::Facebook,
            registration_id: rid,
            front_sealed_key: crypto::wrap::seal_to_endpoint(&ep, &identity, rid.as_bytes(), &dk)
                .expect("seal key"),
            front,
        };
        let a = world::post_cbor(
            &self.router,
            "/v1/devices",
            protocol::encode(&req).expect("encode"),
        )
        .await;
        check!(a.status < 500, "registration answered {}", a.status);
        if a.status == 201 {
            check!(mangle.is_none(), "a tampered card front was accepted");
            let signing = Ed25519Secret::generate().expect("signing key");
            self.registered.push((identity, signing, email.to_string()));
        }
    }

    async fn activate(&mut self, which: u8, code: Option<String>) {
        if self.registered.is_empty() {
            return;
        }
        let (identity, signing, email) = &self.registered[which as usize % self.registered.len()];
        let path = format!("/v1/dev/mailbox/{}", email.replace('/', "%2F"));
        let mailbox = call(&self.router, Method::GET, &path, &[], Vec::new(), None).await;
        let real = mailbox
            .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m.body).ok())
            .and_then(|v| v["code"].as_str().map(str::to_string));
        let code = code.or(real).unwrap_or_default();
        let ep = world::template().endpoint_public();
        let req = world::activate_request(identity, signing, &ep, &code);
        let a = world::post_cbor(
            &self.router,
            "/v1/devices/activate",
            protocol::encode(&req).expect("encode"),
        )
        .await;
        check!(a.status < 500, "activation answered {}", a.status);
        if a.status == 200 {
            let r: protocol::ActivateResponse =
                protocol::decode(&a.body, 1 << 22, "activation").expect("answer");
            self.tokens.push(r.token);
            self.ids.push(identity.device_id());
            self.signing.push(signing.clone());
        }
    }

    async fn raw(&mut self, dev: Option<u8>, method: u8, route: u8, body: Vec<u8>, cbor: bool) {
        let m = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::HEAD,
            Method::DELETE,
            Method::OPTIONS,
        ][method as usize % 7]
            .clone();
        let mut path = CBOR_ROUTES[route as usize % CBOR_ROUTES.len()].to_string();
        if path.ends_with('/') {
            let id = self.bundles[0][route as usize % 4].id;
            path.push_str(&id.to_string());
        }
        let mut h = match dev {
            Some(d) => auth(&self.tokens[self.dev(d)]),
            None => Vec::new(),
        };
        if cbor {
            h.push(("content-type".into(), protocol::CBOR.into()));
        }
        if path.starts_with("/v1/supports/") {
            h.push((
                "idempotency-key".into(),
                path.trim_start_matches("/v1/supports/").into(),
            ));
        }
        let _ = self.send(m, &path, h, body).await;
    }

    /// Storage is bounded by the live uploads, and the endpoint's count agrees with ours.
    async fn invariants(&self) {
        let live: Vec<&Slot> = self.slots.iter().filter(|s| !s.deleted).collect();
        let files: Vec<_> = std::fs::read_dir(self.blobs.join("uploads"))
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        check!(
            files.len() <= live.len(),
            "{} upload files for {} live uploads",
            files.len(),
            live.len()
        );
        for f in &files {
            let len = f.metadata().map(|m| m.len()).unwrap_or_default();
            check!(
                len <= apoyo_sync::wire::limits::MAX_PART_BYTES,
                "upload file of {len} bytes"
            );
        }
        let a = call(
            &self.router,
            Method::GET,
            "/v1/admin/stats",
            &[],
            Vec::new(),
            None,
        )
        .await
        .expect("stats");
        let stats: apoyo_endpoint::Stats = serde_json::from_slice(&a.body).expect("stats JSON");
        check!(
            stats.counted as usize == self.counted.len(),
            "endpoint counted {}, receipts say {}",
            stats.counted,
            self.counted.len()
        );
        let mut per: BTreeMap<String, u64> = BTreeMap::new();
        for (p, _) in self.counted.keys() {
            *per.entry(p.clone()).or_default() += 1;
        }
        for (p, s) in &stats.by_process {
            check!(
                s.counted == per.get(p).copied().unwrap_or(0),
                "process {p}: counted {}",
                s.counted
            );
        }
    }

    async fn step(&mut self, op: Op) {
        match op {
            Op::Upload {
                dev,
                owner,
                bundle,
                part,
                piece,
            } => {
                let (d, o) = (self.dev(dev), owner as usize % self.bundles.len());
                let _ = self
                    .upload(
                        d,
                        (o, bundle as usize % 4, PartKind::ALL[part as usize % 5]),
                        piece,
                    )
                    .await;
            }
            Op::UploadAll { dev, bundle } => {
                let d = dev as usize % self.bundles.len();
                for kind in PartKind::ALL {
                    let _ = self
                        .upload(d, (d, bundle as usize % 4, kind), u16::MAX)
                        .await;
                }
            }
            Op::Commit {
                dev,
                owner,
                bundle,
                from,
                tweak,
            } => {
                let n = self.bundles.len();
                self.commit(
                    self.dev(dev),
                    owner as usize % n,
                    bundle as usize % 4,
                    from as usize % n,
                    tweak,
                )
                .await
            }
            Op::Touch { dev, slot, how } => self.touch(self.dev(dev), slot, how).await,
            Op::Replay { which } => {
                if self.answers.is_empty() {
                    return;
                }
                let (dev, status, body, req, id) =
                    self.answers[which as usize % self.answers.len()].clone();
                let mut h = auth(&self.tokens[dev]);
                h.push(("content-type".into(), protocol::CBOR.into()));
                h.push(("idempotency-key".into(), id.to_string()));
                if let Some(a) = self
                    .send(Method::PUT, &format!("/v1/supports/{id}"), h, req)
                    .await
                {
                    check!(
                        a.status == status && a.body == body,
                        "a replay answered {} with other bytes",
                        a.status
                    );
                }
            }
            Op::Register { email, mangle } => self.register(&email, mangle).await,
            Op::Activate { which, code } => self.activate(which, code).await,
            Op::Raw {
                dev,
                method,
                route,
                body,
                cbor,
            } => self.raw(dev, method, route, body, cbor).await,
            Op::Advance { minutes } => {
                tokio::time::advance(std::time::Duration::from_secs(
                    u64::from(minutes % 240) * 60,
                ))
                .await
            }
        }
        self.invariants().await;
    }
}

fuzz_target!(|ops: Vec<Op>| {
    if ops.len() > 32 {
        return;
    }
    let t = world::template();
    let dir = apoyo_fuzz::tempdir();
    paused_runtime().block_on(async {
        let clock = VirtualClock::new(t.t0).shared();
        let (_state, router) = t.endpoint(dir.path(), clock);
        let mut run = Run {
            router,
            tokens: t.devices.iter().map(|d| d.token.clone()).collect(),
            ids: t.devices.iter().map(|d| d.id.clone()).collect(),
            signing: t.devices.iter().map(|d| d.signing.clone()).collect(),
            root: &t.ring.root,
            bundles: &t.bundles,
            slots: Vec::new(),
            counted: HashMap::new(),
            answers: Vec::new(),
            registered: Vec::new(),
            attempted: Default::default(),
            blobs: dir.path().join("endpoint/endpoint.db.blobs"),
        };
        let start = tokio::time::Instant::now();
        for op in ops {
            // Tokens live 24 h: stop before they expire (expiry is its own property).
            if start.elapsed() > std::time::Duration::from_secs(20 * 3600) {
                break;
            }
            run.step(op).await;
        }
    });
});
