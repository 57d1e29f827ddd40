//! The template world, built once per fuzzing process and copied fresh for every input: an
//! endpoint (SQLite file and blob folder) with three activated bare devices, and a device
//! store registered and activated against it holding two captures. Copying files is far
//! cheaper than registering devices, and every input starts from the same state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use apoyo_endpoint::{AppState, EndpointConfig, KeyRing};
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::receipt::ReceiptSigner;
use apoyo_sync::testkit::crypto::{self, DeviceIdentity, Ed25519Secret, PartSealer, SecretKey};
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::wire::{self as protocol, ActivateRequest, Mailbox, Provider, RegisterRequest};
use apoyo_sync::{
    CaptureId, Clock, EndpointPublicKey, FileKeyGuard, PartKind, Process, SharedClock,
};
use axum::Router;
use time::OffsetDateTime;

use crate::bundle::{self, Bundle};
use crate::router::{RouterTransport, call};

/// Bare devices in the template endpoint.
pub const DEVICES: usize = 3;
/// Sealed captures ready per bare device. Bundle `j` of every device is citizen `j % 3`, so
/// devices share citizens (the duplicate rule) and one device has a citizen twice.
pub const BUNDLES: usize = 4;

/// A bare device identity with its commit signing key (registered at activation, v1.1) and
/// its activation token.
pub struct RawDevice {
    pub identity: DeviceIdentity,
    pub signing: Ed25519Secret,
    pub token: String,
    pub id: String,
}

pub struct Template {
    root: tempfile::TempDir,
    /// The time every input starts at (the template's activations are valid 24 h from it).
    pub t0: OffsetDateTime,
    /// The endpoint's key ring (one seal and one receipt key, certified by `root` from `t0`).
    pub ring: KeyRing,
    /// The INE root's private key (kept so a target can certify keys of its own).
    pub ine_root: Ed25519Secret,
    pub processes: Vec<Process>,
    pub keyring: FileKeyGuard,
    pub devices: Vec<RawDevice>,
    /// `bundles[d][j]`: bundle `j` of device `d`.
    pub bundles: Vec<Vec<Bundle>>,
    /// The captures the template store holds.
    pub store_captures: Vec<CaptureId>,
}

static TEMPLATE: OnceLock<Template> = OnceLock::new();

/// The template (built on first use).
pub fn template() -> &'static Template {
    TEMPLATE.get_or_init(build)
}

impl Template {
    /// The seal key devices are provisioned with.
    pub fn endpoint_public(&self) -> EndpointPublicKey {
        self.ring.seal[0].secret.public()
    }
    /// The endpoint's receipt key.
    pub fn receipt_signer(&self) -> ReceiptSigner {
        ReceiptSigner::from_bytes(&self.ring.receipt[0].signer.to_bytes())
    }
    /// The INE root's certificate of the receipt key.
    pub fn receipt_cert(&self) -> apoyo_sync::wire::SignedKeyCert {
        self.ring.receipt[0].cert.clone()
    }
    /// What a device is provisioned with.
    pub fn provisioning(&self) -> InePublicKeys {
        InePublicKeys {
            seal_key: self.endpoint_public(),
            ine_root: self.ring.root,
        }
    }
    fn config(&self, db_path: PathBuf, clock: SharedClock) -> EndpointConfig {
        let mut cfg = EndpointConfig::new(db_path, self.ring.clone(), self.processes.clone());
        cfg.dev = true;
        cfg.clock = clock;
        cfg
    }

    /// A fresh copy of the endpoint, in `dir`.
    pub fn endpoint(&self, dir: &Path, clock: SharedClock) -> (AppState, Router) {
        crate::copy_dir(&self.root.path().join("endpoint"), &dir.join("endpoint"));
        let cfg = self.config(dir.join("endpoint").join("endpoint.db"), clock);
        let state = AppState::open(cfg).expect("the endpoint copy opens");
        let router = apoyo_endpoint::router(state.clone());
        (state, router)
    }

    /// A fresh copy of the device store, in `dir/store`.
    pub fn store(&self, dir: &Path, clock: SharedClock) -> Store {
        let path = self.copy_store(dir);
        self.open_store(&path, clock).expect("the store copy opens")
    }

    /// Copies the template store to `dir/store` without opening it; returns its path.
    pub fn copy_store(&self, dir: &Path) -> PathBuf {
        let path = dir.join("store");
        crate::copy_dir(&self.root.path().join("store"), &path);
        path
    }

    pub fn open_store(&self, dir: &Path, clock: SharedClock) -> apoyo_sync::Result<Store> {
        Store::open(dir, &self.keyring, store_options(clock))
    }
}

pub fn store_options(clock: SharedClock) -> StoreOptions {
    StoreOptions {
        disk_reserve_bytes: 0,
        clock,
    }
}

fn build() -> Template {
    let root = crate::tempdir();
    // Whole seconds: the endpoint compares unix seconds.
    let t0 = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("now");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0));
    let ine_root = Ed25519Secret::generate().expect("INE root");
    let ring = KeyRing::generate(&ine_root, t0).expect("key ring");
    let processes =
        Process::parse_json_list(bundle::PROCESSES.as_bytes()).expect("example processes");
    let keyring = FileKeyGuard::open_or_create(&root.path().join("keyring")).expect("keyring");
    let mut t = Template {
        root,
        t0,
        ring,
        ine_root,
        processes,
        keyring,
        devices: Vec::new(),
        bundles: Vec::new(),
        store_captures: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = t.root.path().join("endpoint").join("endpoint.db");
        std::fs::create_dir_all(db.parent().expect("parent")).expect("endpoint folder");
        let state = AppState::open(t.config(db, clock.clone())).expect("endpoint");
        let router = apoyo_endpoint::router(state.clone());
        for d in 0..DEVICES {
            let dev = raw_device(&t, &router, &format!("device{d}@example.org")).await;
            let bundles = (0..BUNDLES)
                .map(|j| {
                    let process = if j == 3 {
                        bundle::CONSULTA
                    } else {
                        bundle::REVOCACION
                    };
                    Bundle::seal(&dev.identity, &t.endpoint_public(), process, j % 3, t0)
                })
                .collect();
            t.devices.push(dev);
            t.bundles.push(bundles);
        }
        let (store, ids) = store_device(&t, &router, clock.clone()).await;
        t.store_captures = ids;
        drop(store);
        drop(router);
        drop(state);
    });
    t
}

/// Registers and activates a store through the core's own client, then captures citizens 0
/// and 1 for the national process.
async fn store_device(
    t: &Template,
    router: &Router,
    clock: SharedClock,
) -> (Store, Vec<CaptureId>) {
    let dir = t.root.path().join("store");
    let mut store = Store::init(
        &dir,
        &t.keyring,
        &t.provisioning(),
        None,
        store_options(clock),
    )
    .expect("store init");
    let transport = RouterTransport {
        router: router.clone(),
    };
    let email = "store@example.org";
    apoyo_sync::testkit::sync::device::register(
        &mut store,
        &transport,
        "http://127.0.0.1:9",
        email,
        Provider::Google,
        &bundle::jpeg(300, 7),
    )
    .await
    .expect("store registers");
    let code = mailbox_code(router, email).await;
    apoyo_sync::testkit::sync::device::activate(&mut store, &transport, &code)
        .await
        .expect("store activates");
    let ids = (0..2)
        .map(|i| {
            store
                .capture(bundle::new_capture(bundle::REVOCACION, i))
                .expect("template capture")
        })
        .collect();
    (store, ids)
}

async fn mailbox_code(router: &Router, email: &str) -> String {
    let a = call(
        router,
        axum::http::Method::GET,
        &format!("/v1/dev/mailbox/{email}"),
        &[],
        Vec::new(),
        None,
    )
    .await
    .expect("mailbox answer");
    let m: Mailbox = serde_json::from_slice(&a.body).expect("mailbox JSON");
    m.code
}

/// A bare identity registered and activated by hand (its secret is needed to seal captures).
async fn raw_device(t: &Template, router: &Router, email: &str) -> RawDevice {
    let identity = DeviceIdentity::generate().expect("identity");
    let signing = Ed25519Secret::generate().expect("signing key");
    let ep = t.endpoint_public();
    let registration_id = CaptureId::new_v7(t.t0);
    let dk = crypto::random_key().expect("key");
    let mut front = Vec::new();
    PartSealer::new(&dk, registration_id.as_bytes(), PartKind::Front)
        .and_then(|mut s| s.seal_to(&bundle::jpeg(300, 9), &mut front))
        .expect("seal front");
    let reg = RegisterRequest {
        v: 1,
        device_public: identity.public(),
        email: email.into(),
        provider: Provider::Google,
        registration_id,
        front_sealed_key: crypto::wrap::seal_to_endpoint(
            &ep,
            &identity,
            registration_id.as_bytes(),
            &dk,
        )
        .expect("seal key"),
        front,
    };
    let a = post_cbor(
        router,
        "/v1/devices",
        protocol::encode(&reg).expect("encode"),
    )
    .await;
    assert_eq!(a.status, 201, "template registration");
    let code = mailbox_code(router, email).await;
    let act = activate_request(&identity, &signing, &ep, &code);
    let a = post_cbor(
        router,
        "/v1/devices/activate",
        protocol::encode(&act).expect("encode"),
    )
    .await;
    assert_eq!(a.status, 200, "template activation");
    let resp: protocol::ActivateResponse =
        protocol::decode(&a.body, 1 << 22, "activation").expect("activation answer");
    RawDevice {
        id: identity.device_id(),
        identity,
        signing,
        token: resp.token,
    }
}

/// A v1.1 activation request for `code`, registering `signing` (no auxiliar id).
pub fn activate_request(
    identity: &DeviceIdentity,
    signing: &Ed25519Secret,
    ep: &EndpointPublicKey,
    code: &str,
) -> ActivateRequest {
    let mut nonce = [0u8; 16];
    crypto::fill_random(&mut nonce).expect("nonce");
    let shared: SecretKey = identity.diffie_hellman(&ep.0);
    let proof = protocol::activation_proof_v11(
        &shared,
        code,
        &nonce,
        &identity.public(),
        &signing.public(),
        None,
    )
    .expect("activation proof");
    ActivateRequest {
        v: 1,
        device_public: identity.public(),
        code: code.into(),
        nonce: nonce.to_vec(),
        proof,
        signing_public: Some(signing.public()),
        auxiliar_id: None,
    }
}

pub async fn post_cbor(router: &Router, path: &str, body: Vec<u8>) -> crate::router::Answer {
    call(
        router,
        axum::http::Method::POST,
        path,
        &[("content-type".into(), protocol::CBOR.into())],
        body,
        None,
    )
    .await
    .expect("an answer")
}
