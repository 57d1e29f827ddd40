//! Regression tests for what the fuzz targets found (docs/fuzzing.md). Each test replays the
//! finding as a plain `cargo test` against the real store and engine, through a scripted
//! transport that answers like the adversarial endpoint of the `client_adversarial` target.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::receipt::ReceiptSigner;
use apoyo_sync::testkit::crypto::{Ed25519Secret, anchor};
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::transport::{Method, Request, Response, SendFuture, Transport};
use apoyo_sync::testkit::sync::{SyncOptions, engine};
use apoyo_sync::wire::trust::{self, KeyPurpose, SignedKeyCert};
use apoyo_sync::wire::{
    self as protocol, CommitRequest, ProcessList, Receipt, ReceiptPart, ReceiptResult,
    SignedCommit, SignedReceipt, limits,
};
use apoyo_sync::{CaptureId, IneRoot, Process, State};
use common::Fixture;

/// What the scripted endpoint does with a request; records every request path.
struct Scripted {
    location: String,
    device_id: String,
    signer: ReceiptSigner,
    /// The INE root's certificate of `signer`'s key.
    cert: SignedKeyCert,
    paths: Mutex<Vec<String>>,
    processes: Vec<apoyo_sync::Process>,
}

fn ok(status: u16, headers: Vec<(&str, String)>, body: Vec<u8>) -> Response {
    Response {
        status,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        body,
    }
}

impl Transport for Scripted {
    fn send(&self, r: Request, _limit: usize) -> SendFuture<'_> {
        self.paths.lock().expect("paths").push(r.path.clone());
        let resp = match r.method {
            Method::Get => ok(
                200,
                vec![],
                protocol::encode(&ProcessList {
                    v: 1,
                    processes: self.processes.clone(),
                })
                .expect("encode"),
            ),
            Method::Post => ok(201, vec![("location", self.location.clone())], vec![]),
            Method::Head => ok(200, vec![("upload-offset", "0".into())], vec![]),
            Method::Patch => {
                let off: u64 = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == "upload-offset")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                ok(
                    204,
                    vec![("upload-offset", (off + r.body.len() as u64).to_string())],
                    vec![],
                )
            }
            _ => {
                let signed: SignedCommit =
                    protocol::decode(&r.body, limits::MAX_COMMIT_BYTES, "signed commit")
                        .expect("a signed commit");
                let c: CommitRequest =
                    protocol::decode(&signed.commit, limits::MAX_COMMIT_BYTES, "commit")
                        .expect("a commit");
                let receipt = Receipt {
                    v: 1,
                    capture_id: c.capture_id,
                    process_id: c.process_id.clone(),
                    device_id: self.device_id.clone(),
                    result: ReceiptResult::Counted,
                    first_capture_id: None,
                    parts: c
                        .parts
                        .iter()
                        .map(|p| ReceiptPart {
                            kind: p.kind,
                            sha256: p.sha256,
                        })
                        .collect(),
                    counted_at: NOW,
                    endpoint_key_id: anchor::key_id(&self.signer.public()),
                    collector: c.collector.clone(),
                    captured_at: c.captured_at,
                    sealed_key_sha256: apoyo_sync::testkit::crypto::sha256(&c.sealed_key),
                };
                let rb = protocol::encode(&receipt).expect("encode");
                let sig = self.signer.sign(&protocol::receipt_signing_input(&rb));
                ok(
                    201,
                    vec![],
                    protocol::encode(&SignedReceipt {
                        receipt: rb,
                        signature: sig.to_vec(),
                        key_cert: Some(self.cert.clone()),
                    })
                    .expect("encode"),
                )
            }
        };
        Box::pin(async move { Ok(resp) })
    }
}

/// The store's (manual) clock; the scripted endpoint counts receipts then.
const NOW: time::OffsetDateTime = time::macros::datetime!(2026-01-10 12:00 UTC);

/// An INE root, the receipt key it certifies (valid a year around [`NOW`]) and that
/// certificate.
struct Ine {
    root: Ed25519Secret,
    signer: ReceiptSigner,
    cert: SignedKeyCert,
}

impl Ine {
    fn new() -> Ine {
        let root = Ed25519Secret::generate().expect("root");
        let signer = ReceiptSigner::generate().expect("signer");
        let year = time::Duration::days(365);
        let info = trust::key_cert(KeyPurpose::Receipt, signer.public(), NOW - year, NOW + year);
        let cert = SignedKeyCert::issue(&root, &info).expect("certificate");
        Ine { root, signer, cert }
    }

    fn scripted(&self, location: &str, device_id: &str, processes: Vec<Process>) -> Scripted {
        Scripted {
            location: location.into(),
            device_id: device_id.into(),
            signer: ReceiptSigner::from_bytes(&self.signer.to_bytes()),
            cert: self.cert.clone(),
            paths: Mutex::new(Vec::new()),
            processes,
        }
    }
}

/// A store provisioned with `ine`'s root, activated with its receipt key, holding one capture.
fn store_with_capture(fx: &Fixture, ine: &Ine) -> (Store, CaptureId) {
    let clock = ManualClock::new(NOW);
    let provisioning = InePublicKeys {
        seal_key: fx.endpoint.public(),
        ine_root: IneRoot::from_bytes(&ine.root.public()).expect("root key"),
    };
    let opts = StoreOptions {
        disk_reserve_bytes: 0,
        clock: Arc::new(clock),
    };
    let mut store =
        Store::init(&fx.store_dir(), &fx.guard(), &provisioning, None, opts).expect("init");
    let list = Process::parse_json_list(common::PROCESSES.as_bytes()).expect("processes");
    store.put_processes(&list).expect("put_processes");
    let signer = &ine.signer;
    store.set_endpoint_url("http://127.0.0.1:9").expect("url");
    store
        .set_registration(&CaptureId::new_v7(time::OffsetDateTime::now_utc()))
        .expect("registration");
    let expires = time::macros::datetime!(2026-01-11 12:00 UTC);
    store
        .set_activation(
            &"ab".repeat(32),
            expires,
            &signer.public(),
            &anchor::key_id(&signer.public()),
        )
        .expect("activation");
    let id = store
        .capture(common::capture_of("nacional", &common::clave(1)))
        .expect("capture");
    (store, id)
}

fn run(store: &mut Store, t: &Scripted) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let opts = SyncOptions {
        budget: Duration::from_secs(60),
        seed: Some(1),
        ..SyncOptions::default()
    };
    rt.block_on(engine::run(store, t, opts))
        .expect("the run never fails on the network");
}

/// Found by `client_adversarial`: an upload created with a `Location` that is not a path under
/// `/v1/` (here a host name's tail) was used as the request path as it was, so the next HEAD
/// or PATCH — with the bearer token — went to `<base URL><location>`: another host for a
/// location such as `.evil.example/x`. The client now refuses such a Location (transient).
#[test]
fn an_upload_location_outside_v1_uploads_is_never_requested() {
    let fx = Fixture::new();
    let ine = Ine::new();
    let (mut store, id) = store_with_capture(&fx, &ine);
    for location in [
        ".evil.example/x",
        "evil.example",
        "/v1/../../admin",
        "https://e.example/v1/uploads/a b",
    ] {
        let t = ine.scripted(
            location,
            store.device_id(),
            store.processes().expect("processes"),
        );
        run(&mut store, &t);
        for p in t.paths.lock().expect("paths").iter() {
            assert!(
                p.starts_with("/v1/") && !p.contains(".."),
                "requested {p:?} after Location {location:?}"
            );
        }
        assert_ne!(
            store.info(&id).expect("info").state,
            State::Purged,
            "{location}"
        );
    }
}

/// Found while writing `client_adversarial`'s oracle (its invariant: a capture is purged only
/// after a genuine receipt for it, naming this device): a receipt signed by the endpoint's key
/// for this capture,
/// process and parts but naming another device was accepted, and the capture crypto-shredded.
/// A receipt is now accepted only for the device that sent the capture (in v1.1, by
/// `protocol::trust::verify_receipt`, whose other checks this receipt passes: certified key,
/// signature, every other field as committed).
#[test]
fn a_receipt_naming_another_device_does_not_shred_the_capture() {
    let fx = Fixture::new();
    let ine = Ine::new();
    let (mut store, id) = store_with_capture(&fx, &ine);
    let t = ine.scripted(
        "/v1/uploads/u1",
        "0123456789abcdef0123456789abcdef",
        store.processes().expect("processes"),
    );
    run(&mut store, &t);
    let info = store.info(&id).expect("info");
    assert_eq!(info.state, State::Quarantined, "{info:?}");
    for kind in apoyo_sync::PartKind::ALL {
        store
            .read_part(&id, kind, &mut std::io::sink())
            .expect("the capture is still whole");
    }
    // The same exchange with the right device id commits and purges it.
    store.retry_quarantined(&id).expect("retry");
    let t = Scripted {
        device_id: store.device_id().into(),
        ..t
    };
    run(&mut store, &t);
    assert_eq!(store.info(&id).expect("info").state, State::Purged);
}
