//! Test harness: a real endpoint on loopback with a real SQLite file in a temporary folder (or a
//! fresh schema of a real PostgreSQL server, `backend`), a real HTTP client, and devices built from the core crate (a real `Store`, or a bare identity
//! for requests crafted by hand).
#![allow(dead_code)]

pub mod backend;
pub mod fleet;
pub mod kept;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_endpoint::{Chaos, EndpointConfig, KeyRing, RunningEndpoint};
use apoyo_sync::Clock;
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::{self, DeviceIdentity, Ed25519Secret, PartSealer};
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig};
use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::wire::trust;
use apoyo_sync::wire::{
    self as protocol, ActivateRequest, CommitPart, CommitRequest, ErrorBody, Provider, Reason,
    RegisterRequest,
};
use apoyo_sync::wire::{ImageFormat, ImageFormats};
use apoyo_sync::{
    CaptureId, CardFields, Collector, CredentialModel, EndpointPublicKey, FileKeyGuard, Images,
    NewCapture, PartKind, Process, SharedClock,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PROCESSES: &str = include_str!("../../../examples/processes.json");
pub const REVOCACION: &str = "revocacion-2022";
pub const CONSULTA: &str = "consulta-cdmx-demo";

pub fn image(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/images")
            .join(name),
    )
    .expect("sample image")
}

pub fn images() -> Images {
    Images {
        front: image("front.jpg"),
        back: image("back.jpg"),
        selfie: image("selfie.jpg"),
        signature: image("signature.png"),
    }
}

pub fn processes(json: &str) -> Vec<Process> {
    Process::parse_json_list(json.as_bytes()).unwrap()
}

/// A syntactically valid clave de elector, distinct per `i`.
pub fn clave(i: usize) -> String {
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

pub struct Opts {
    pub processes: Vec<Process>,
    pub clock: Option<ManualClock>,
    pub dev: bool,
    pub upload_ttl: Duration,
    pub body_idle_timeout: Duration,
    pub chaos: Option<Arc<dyn Chaos>>,
    pub registration: apoyo_endpoint::RegistrationLimits,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            processes: processes(PROCESSES),
            clock: None,
            dev: true,
            upload_ttl: apoyo_endpoint::DEFAULT_UPLOAD_TTL,
            body_idle_timeout: apoyo_endpoint::DEFAULT_BODY_IDLE_TIMEOUT,
            chaos: None,
            registration: Default::default(),
        }
    }
}

/// A running endpoint and what a test needs to talk to it.
pub struct Harness {
    pub ep: Option<RunningEndpoint>,
    pub url: String,
    pub addr: SocketAddr,
    pub key: EndpointSecretKey,
    pub receipt_public: [u8; 32],
    /// The key ring (v1.1): the first seal key is `key`, the first receipt key signs.
    pub ring: KeyRing,
    /// The INE root's private key (to rotate the ring in tests).
    pub root: Ed25519Secret,
    /// Each activated token's commit-signing key, so `commit` can sign as that device.
    pub signers: Mutex<HashMap<String, Ed25519Secret>>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub clock: Option<ManualClock>,
    pub processes: Vec<Process>,
    pub dev: bool,
    pub upload_ttl: Duration,
    pub body_idle_timeout: Duration,
    /// The PostgreSQL URL (a fresh schema) when the suite runs on PostgreSQL.
    pub database: Option<String>,
    pub registration: apoyo_endpoint::RegistrationLimits,
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("endpoint.db")
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Opts::default()).await
    }

    pub async fn start_with(o: Opts) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let root = Ed25519Secret::generate().unwrap();
        // Certificates valid from a day before the endpoint's (possibly manual) clock.
        let now = o
            .clock
            .as_ref()
            .map_or_else(time::OffsetDateTime::now_utc, |c| c.now());
        let ring = KeyRing::generate(&root, now).unwrap();
        let key = EndpointSecretKey::from_bytes(*ring.seal[0].secret.as_bytes());
        let mut h = Harness {
            ep: None,
            url: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            key,
            receipt_public: ring.receipt[0].info.key,
            ring,
            root,
            signers: Mutex::new(HashMap::new()),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            clock: o.clock,
            processes: o.processes,
            dev: o.dev,
            upload_ttl: o.upload_ttl,
            body_idle_timeout: o.body_idle_timeout,
            database: None,
            registration: o.registration,
        };
        if let Some(server) = backend::server_url() {
            h.database = Some(backend::fresh_schema(&server).await);
        }
        h.boot(o.chaos).await;
        h
    }

    fn config(&self, chaos: Option<Arc<dyn Chaos>>) -> EndpointConfig {
        let mut cfg = EndpointConfig::new(
            db_path(self.dir.path()),
            self.ring.clone(),
            self.processes.clone(),
        );
        cfg.dev = self.dev;
        cfg.upload_ttl = self.upload_ttl;
        cfg.body_idle_timeout = self.body_idle_timeout;
        cfg.chaos = chaos;
        cfg.registration = self.registration.clone();
        if let Some(url) = &self.database {
            cfg.database = Some(url.parse().expect("a PostgreSQL URL"));
            cfg.blob_dir = Some(self.blob_dir());
        }
        if let Some(c) = &self.clock {
            let clock: SharedClock = Arc::new(c.clone());
            cfg.clock = clock;
        }
        cfg
    }

    async fn boot(&mut self, chaos: Option<Arc<dyn Chaos>>) {
        let ep = apoyo_endpoint::start(self.config(chaos), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        self.url = ep.url();
        self.addr = ep.addr;
        self.ep = Some(ep);
    }

    /// Stops the endpoint and starts it again on the same database and blob folder.
    pub async fn restart(&mut self) {
        if let Some(ep) = self.ep.take() {
            ep.shutdown().await;
        }
        self.boot(None).await;
    }

    pub fn endpoint_public(&self) -> EndpointPublicKey {
        self.key.public()
    }

    /// What a device of this endpoint is provisioned with.
    pub fn provisioning(&self) -> InePublicKeys {
        InePublicKeys {
            seal_key: self.endpoint_public(),
            ine_root: self.ring.root,
        }
    }

    /// Adds a seal key and a receipt key (certified by the root) and restarts on them.
    pub async fn rotate(&mut self, at: time::OffsetDateTime) {
        self.ring.rotate(&self.root, at).unwrap();
        self.receipt_public = self.ring.receipt.last().unwrap().info.key;
        self.restart().await;
    }

    pub fn blob_dir(&self) -> PathBuf {
        let mut s = db_path(self.dir.path()).into_os_string();
        s.push(".blobs");
        PathBuf::from(s)
    }

    /// Rows of `sql` (one text parameter `?1`, or none) from the endpoint's database.
    pub async fn query(&self, sql: &str, param: Option<&str>) -> Vec<Vec<backend::Val>> {
        backend::query(
            self.database.as_deref(),
            &db_path(self.dir.path()),
            sql,
            param,
        )
        .await
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Answer {
        let resp = rb.send().await.expect("a response");
        Answer::read(resp).await
    }

    pub async fn post_cbor(&self, path: &str, body: Vec<u8>) -> Answer {
        self.send(
            self.req(Method::POST, path)
                .header("content-type", protocol::CBOR)
                .body(body),
        )
        .await
    }

    pub async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let a = self.send(self.req(Method::GET, path)).await;
        (a.status == 200).then(|| serde_json::from_slice(&a.body).unwrap())
    }

    pub async fn mailbox(&self, email: &str) -> serde_json::Value {
        self.get_json(&format!("/v1/dev/mailbox/{email}"))
            .await
            .expect("a code in the mailbox")
    }

    pub async fn mailbox_code(&self, email: &str) -> String {
        self.mailbox(email).await["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn stats(&self) -> serde_json::Value {
        let http = self.get_json("/v1/admin/stats").await.expect("stats");
        // The in-process call agrees with the route.
        let direct = self.ep.as_ref().unwrap().stats().await;
        assert_eq!(serde_json::to_value(&direct).unwrap(), http);
        http
    }

    // ---- devices ------------------------------------------------------------------------

    /// A device with a real store, registered and activated through the core client.
    pub async fn store_device(&self, name: &str) -> StoreDevice {
        let kr =
            FileKeyGuard::open_or_create(&self.dir.path().join(format!("{name}-keyring"))).unwrap();
        let mut store = Store::init(
            &self.dir.path().join(name),
            &kr,
            &self.provisioning(),
            None,
            StoreOptions::default(),
        )
        .unwrap();
        let t = HttpTransport::new(&self.url, &TlsConfig::default()).unwrap();
        let email = format!("{name}@example.org");
        apoyo_sync::testkit::sync::device::register(
            &mut store,
            &t,
            &self.url,
            &email,
            Provider::Google,
            &image("front.jpg"),
        )
        .await
        .unwrap();
        let code = self.mailbox_code(&email).await;
        let resp = apoyo_sync::testkit::sync::device::activate(&mut store, &t, &code)
            .await
            .unwrap();
        assert_eq!(resp.receipt_key, self.receipt_public);
        self.signers
            .lock()
            .unwrap()
            .insert(resp.token.clone(), store.signing_key().unwrap());
        StoreDevice {
            store,
            token: resp.token,
        }
    }

    /// A bare device identity, registered and activated by hand.
    pub async fn raw_device(&self, name: &str) -> (RawDevice, String) {
        let dev = RawDevice::new();
        let email = format!("{name}@example.org");
        let a = self
            .post_cbor(
                "/v1/devices",
                protocol::encode(&dev.register_request(&self.endpoint_public(), &email)).unwrap(),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.error());
        let code = self.mailbox_code(&email).await;
        let a = self
            .post_cbor(
                "/v1/devices/activate",
                protocol::encode(&dev.activate_request(&self.endpoint_public(), &code)).unwrap(),
            )
            .await;
        assert_eq!(a.status, 200, "{:?}", a.error());
        let resp: protocol::ActivateResponse =
            protocol::decode(&a.body, 1 << 22, "activation").unwrap();
        self.signers
            .lock()
            .unwrap()
            .insert(resp.token.clone(), dev.signer.clone());
        (dev, resp.token)
    }

    // ---- tus --------------------------------------------------------------------------------

    pub fn tus(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.req(method, path)
            .header("tus-resumable", "1.0.0")
            .bearer_auth(token)
    }

    pub async fn create_upload(
        &self,
        token: &str,
        capture: &CaptureId,
        kind: PartKind,
        length: u64,
    ) -> Answer {
        let meta = format!(
            "capture_id {},kind {}",
            B64.encode(capture.to_string()),
            B64.encode(kind.name())
        );
        self.send(
            self.tus(Method::POST, "/v1/uploads", token)
                .header("upload-length", length.to_string())
                .header("upload-metadata", meta),
        )
        .await
    }

    pub async fn patch(
        &self,
        token: &str,
        path: &str,
        offset: u64,
        bytes: &[u8],
        checksum: Option<[u8; 32]>,
    ) -> Answer {
        let mut rb = self
            .tus(Method::PATCH, path, token)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(bytes.to_vec());
        if let Some(c) = checksum {
            rb = rb.header("upload-checksum", format!("sha256 {}", B64.encode(c)));
        }
        self.send(rb).await
    }

    pub async fn head(&self, token: &str, path: &str) -> Answer {
        self.send(self.tus(Method::HEAD, path, token)).await
    }

    /// Uploads `bytes` as one part in PATCHes of `chunk` bytes (each with its checksum),
    /// checking the offset with HEAD between PATCHes; returns the upload path.
    pub async fn upload(
        &self,
        token: &str,
        capture: &CaptureId,
        kind: PartKind,
        bytes: &[u8],
        chunk: usize,
    ) -> String {
        let a = self
            .create_upload(token, capture, kind, bytes.len() as u64)
            .await;
        assert_eq!(a.status, 201, "create: {:?}", a.error());
        assert!(a.header("upload-expires").is_some());
        let path = a.header("location").unwrap().to_string();
        let mut offset = 0usize;
        while offset < bytes.len() {
            let end = (offset + chunk).min(bytes.len());
            let piece = &bytes[offset..end];
            let a = self
                .patch(
                    token,
                    &path,
                    offset as u64,
                    piece,
                    Some(crypto::sha256(piece)),
                )
                .await;
            assert_eq!(a.status, 204, "patch: {:?}", a.error());
            assert_eq!(a.header("upload-offset"), Some(end.to_string().as_str()));
            offset = end;
            let h = self.head(token, &path).await;
            assert_eq!(h.status, 200);
            assert_eq!(h.header("upload-offset"), Some(offset.to_string().as_str()));
        }
        path
    }

    /// Uploads every part of a bundle; returns the commit's part list.
    pub async fn upload_all(&self, token: &str, b: &Bundle, chunk: usize) -> Vec<CommitPart> {
        let mut parts = Vec::new();
        for (kind, bytes) in &b.parts {
            let upload = self.upload(token, &b.id, *kind, bytes, chunk).await;
            parts.push(CommitPart {
                kind: *kind,
                upload,
                sha256: crypto::sha256(bytes),
                length: bytes.len() as u64,
            });
        }
        parts
    }

    /// Commits as the device the token was issued to (a v1.1 signed commit).
    pub async fn commit(&self, token: &str, req: &CommitRequest) -> Answer {
        self.commit_at(&self.url, token, req).await
    }

    /// Signs and sends a commit to the endpoint at `base` (another replica, or this one).
    pub async fn commit_at(&self, base: &str, token: &str, req: &CommitRequest) -> Answer {
        let signed = {
            let signers = self.signers.lock().unwrap();
            let key = signers
                .get(token)
                .expect("a token activated through the harness");
            trust::sign_commit(key, req).unwrap()
        };
        let body = protocol::encode(&signed).unwrap();
        self.commit_body_at(base, token, &req.capture_id, body)
            .await
    }

    /// Sends `body` as the commit of `id`.
    pub async fn commit_body(&self, token: &str, id: &CaptureId, body: Vec<u8>) -> Answer {
        self.commit_body_at(&self.url, token, id, body).await
    }

    async fn commit_body_at(
        &self,
        base: &str,
        token: &str,
        id: &CaptureId,
        body: Vec<u8>,
    ) -> Answer {
        let id = id.to_string();
        self.send(
            self.http
                .request(Method::PUT, format!("{base}/v1/supports/{id}"))
                .bearer_auth(token)
                .header("idempotency-key", id)
                .header("content-type", protocol::CBOR)
                .body(body),
        )
        .await
    }

    /// Uploads a bundle (64 KiB PATCHes) and commits it.
    pub async fn deliver(&self, token: &str, b: &Bundle) -> Answer {
        let parts = self.upload_all(token, b, 64 * 1024).await;
        self.commit(token, &b.commit_request(parts)).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Dropping the RunningEndpoint stops the server.
        self.ep.take();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("a body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error body, if the answer carries one.
    pub fn error(&self) -> Option<ErrorBody> {
        protocol::decode(&self.body, 1 << 16, "error").ok()
    }

    /// The reason of an error answer (panics if there is no ErrorBody).
    pub fn reason(&self) -> Reason {
        self.error()
            .unwrap_or_else(|| {
                panic!(
                    "no ErrorBody in a {} answer: {:?}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                )
            })
            .reason
    }

    /// Asserts a refusal with this status and reason.
    pub fn refused(&self, status: u16, reason: Reason) {
        assert_eq!(
            (self.status, self.error().map(|e| e.reason)),
            (status, Some(reason)),
            "{:?}",
            self.error()
        );
        assert_eq!(self.header("content-type"), Some(protocol::CBOR));
    }
}

pub struct StoreDevice {
    pub store: Store,
    pub token: String,
}

impl StoreDevice {
    pub fn capture(&mut self, process: &str, model: &str, fields: CardFields) -> CaptureId {
        self.store
            .capture(NewCapture {
                process_id: process.into(),
                model: CredentialModel::parse(model).unwrap(),
                fields,
                location: None,
                images: images(),
                collector: None,
            })
            .unwrap()
    }

    pub fn capture_clave(&mut self, process: &str, clave: &str) -> CaptureId {
        self.capture(
            process,
            "G",
            CardFields {
                clave_elector: clave.into(),
                ..Default::default()
            },
        )
    }

    /// What the device would send for a capture: its exact stored ciphertexts and sealed key.
    pub fn bundle(&self, id: &CaptureId) -> Bundle {
        use std::io::Read;
        let info = self.store.info(id).unwrap();
        let mut parts = Vec::new();
        for p in self.store.parts(id).unwrap() {
            let mut bytes = Vec::new();
            self.store
                .part_reader(id, &p)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            assert_eq!(crypto::sha256(&bytes), p.sha256);
            parts.push((p.kind, bytes));
        }
        Bundle {
            seal_key_id: self.store.capture_seal_key_id(id).unwrap(),
            id: *id,
            process_id: info.process_id,
            captured_at: info.captured_at,
            collector: self.store.manifest(id).unwrap().collector,
            sealed_key: self.store.endpoint_seal(id).unwrap(),
            parts,
        }
    }
}

/// A capture as sent on the wire.
#[derive(Clone)]
pub struct Bundle {
    /// The key id of the seal key `sealed_key` was sealed to.
    pub seal_key_id: String,
    pub id: CaptureId,
    pub process_id: String,
    pub captured_at: time::OffsetDateTime,
    pub collector: Collector,
    pub sealed_key: Vec<u8>,
    pub parts: Vec<(PartKind, Vec<u8>)>,
}

impl Bundle {
    pub fn commit_request(&self, parts: Vec<CommitPart>) -> CommitRequest {
        CommitRequest {
            v: 1,
            capture_id: self.id,
            process_id: self.process_id.clone(),
            captured_at: self.captured_at,
            collector: self.collector.clone(),
            sealed_key: self.sealed_key.clone(),
            parts,
            sent_at: time::OffsetDateTime::now_utc(),
            seal_key_id: self.seal_key_id.clone(),
        }
    }

    pub fn part(&self, kind: PartKind) -> &[u8] {
        &self.parts.iter().find(|(k, _)| *k == kind).unwrap().1
    }

    pub fn part_mut(&mut self, kind: PartKind) -> &mut Vec<u8> {
        &mut self.parts.iter_mut().find(|(k, _)| *k == kind).unwrap().1
    }
}

/// A device identity without a store, for requests crafted by hand.
pub struct RawDevice {
    pub identity: DeviceIdentity,
    /// The Ed25519 commit-signing key registered at activation.
    pub signer: Ed25519Secret,
    /// The auxiliar id to activate with, if any.
    pub auxiliar_id: Option<String>,
}

impl RawDevice {
    pub fn new() -> RawDevice {
        RawDevice {
            identity: DeviceIdentity::generate().unwrap(),
            signer: Ed25519Secret::generate().unwrap(),
            auxiliar_id: None,
        }
    }

    pub fn id(&self) -> String {
        self.identity.device_id()
    }

    pub fn register_request(&self, ep: &EndpointPublicKey, email: &str) -> RegisterRequest {
        self.register_request_with(ep, email, &image("front.jpg"))
    }

    pub fn register_request_with(
        &self,
        ep: &EndpointPublicKey,
        email: &str,
        front: &[u8],
    ) -> RegisterRequest {
        self.register_request_as(
            ep,
            email,
            front,
            CaptureId::new_v7(time::OffsetDateTime::now_utc()),
        )
    }

    /// A registration under a given registration id.
    pub fn register_request_as(
        &self,
        ep: &EndpointPublicKey,
        email: &str,
        front: &[u8],
        registration_id: CaptureId,
    ) -> RegisterRequest {
        let dk = crypto::random_key().unwrap();
        let mut sealed = Vec::new();
        PartSealer::new(&dk, registration_id.as_bytes(), PartKind::Front)
            .unwrap()
            .seal_to(front, &mut sealed)
            .unwrap();
        RegisterRequest {
            v: 1,
            device_public: self.identity.public(),
            email: email.into(),
            provider: Provider::Google,
            registration_id,
            front_sealed_key: crypto::wrap::seal_to_endpoint(
                ep,
                &self.identity,
                registration_id.as_bytes(),
                &dk,
            )
            .unwrap(),
            front: sealed,
        }
    }

    pub fn activate_request(&self, ep: &EndpointPublicKey, code: &str) -> ActivateRequest {
        let mut nonce = [0u8; 16];
        crypto::fill_random(&mut nonce).unwrap();
        let shared = self.identity.diffie_hellman(&ep.0);
        let proof = protocol::activation_proof_v11(
            &shared,
            code,
            &nonce,
            &self.identity.public(),
            &self.signer.public(),
            self.auxiliar_id.as_deref(),
        )
        .unwrap();
        ActivateRequest {
            v: 1,
            device_public: self.identity.public(),
            code: code.into(),
            nonce: nonce.to_vec(),
            proof,
            signing_public: Some(self.signer.public()),
            auxiliar_id: self.auxiliar_id.clone(),
        }
    }

    /// A capture sealed by this device, with a manifest built from `m` (whose `capture_id`
    /// is filled in unless `keep_id`).
    pub fn bundle(&self, ep: &EndpointPublicKey, spec: RawSpec) -> Bundle {
        let id = CaptureId::new_v7(spec.captured_at);
        let mut manifest = Manifest {
            v: Manifest::VERSION,
            capture_id: id,
            process_id: spec.process_id.clone(),
            collector: spec.collector.clone(),
            model: CredentialModel::parse(&spec.model).unwrap(),
            fields: spec.fields.clone(),
            location: None,
            captured_at: spec.captured_at,
            engine_version: "test".into(),
            formats: ImageFormats {
                front: ImageFormat::Jpeg,
                back: ImageFormat::Jpeg,
                selfie: ImageFormat::Jpeg,
                signature: ImageFormat::Png,
            },
        };
        if let Some(tweak) = spec.tweak_manifest {
            tweak(&mut manifest);
        }
        let dk = crypto::random_key().unwrap();
        let imgs = images();
        let mut parts = Vec::new();
        for kind in PartKind::ALL {
            let plain = match imgs.get(kind) {
                Some(i) => i.to_vec(),
                None => spec
                    .manifest_bytes
                    .clone()
                    .unwrap_or_else(|| manifest.to_cbor().unwrap()),
            };
            let mut ct = Vec::new();
            PartSealer::new(&dk, id.as_bytes(), kind)
                .unwrap()
                .seal_to(&plain, &mut ct)
                .unwrap();
            parts.push((kind, ct));
        }
        Bundle {
            seal_key_id: ep.key_id(),
            id,
            process_id: spec.process_id,
            captured_at: spec.captured_at,
            collector: spec.collector,
            sealed_key: crypto::wrap::seal_to_endpoint(ep, &self.identity, id.as_bytes(), &dk)
                .unwrap(),
            parts,
        }
    }
}

/// What a hand-made capture holds.
pub struct RawSpec {
    pub process_id: String,
    pub model: String,
    pub fields: CardFields,
    pub captured_at: time::OffsetDateTime,
    pub collector: Collector,
    pub tweak_manifest: Option<fn(&mut Manifest)>,
    /// Sealed as the manifest part instead of the encoded manifest.
    pub manifest_bytes: Option<Vec<u8>>,
}

impl RawSpec {
    pub fn new(process: &str, clave: &str, device_id: &str) -> RawSpec {
        RawSpec {
            process_id: process.into(),
            model: "G".into(),
            fields: CardFields {
                clave_elector: clave.into(),
                ..Default::default()
            },
            captured_at: time::OffsetDateTime::now_utc(),
            collector: Collector::MiApoyo(device_id.into()),
            tweak_manifest: None,
            manifest_bytes: None,
        }
    }
}

/// One request over a raw TCP connection: `head` (request line and headers, ending with the
/// blank line) then `body`, written concurrently with reading the answer, so that an answer sent
/// before the body was read is still seen. Returns the status and the answer's body.
pub async fn raw_http(addr: SocketAddr, head: String, body: Vec<u8>) -> (u16, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        // Keep the write half open until the answer is read.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(wr);
    });
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return (head, buf[end + 4..end + 4 + len].to_vec());
                }
            }
            let n = rd.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                panic!(
                    "connection closed before a whole answer: {:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (head, body) = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer in time");
    writer.abort();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes an ErrorBody from raw bytes.
pub fn reason_of(body: &[u8]) -> Reason {
    protocol::decode::<ErrorBody>(body, 1 << 16, "error")
        .unwrap()
        .reason
}
