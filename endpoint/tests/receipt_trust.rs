//! Protocol v1.1: a receipt is grounds for deleting a capture only if it chains to the INE root
//! the app provisioned and says exactly what the device committed (issue 11, ADR 0015).
//!
//! - A hostile forwarding proxy on loopback, between a real device and the real endpoint, swaps
//!   the receipt key (and the key certificates) at activation and answers the commit itself with
//!   a receipt signed by its own key: the capture is neither reported committed nor purged.
//! - Each refusal of the receipt check, through a transport that alters the real endpoint's
//!   answer to the commit: the capture keeps every byte and is quarantined `receipt_invalid`
//!   (or, with no anchored key at all, stays queued), and nothing is recorded as a receipt.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apoyo_endpoint::KeyRing;
use apoyo_endpoint::keyring::ReceiptKey;
use apoyo_sync::crypto::{self, Ed25519Secret};
use apoyo_sync::protocol::trust::{self, KeyPurpose, SignedKeyCert};
use apoyo_sync::protocol::{
    self, ActivateResponse, CommitRequest, Receipt, ReceiptPart, ReceiptResult, SignedCommit,
    SignedReceipt,
};
use apoyo_sync::sync::transport::{Method, Request, SendFuture};
use apoyo_sync::sync::{
    BackoffPolicy, HttpTransport, SyncOptions, SyncReport, TlsConfig, Transport,
};
use apoyo_sync::{CaptureId, Collector, FileKeyGuard, PartKind, State, Store, StoreOptions};
use common::*;

fn opts(budget: Duration) -> SyncOptions {
    SyncOptions {
        budget,
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        seed: Some(7),
        progress: None,
    }
}

/// Every file of a store folder but its lock, with its bytes.
fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("parts")).unwrap() {
        let p = e.unwrap().path();
        out.insert(p.clone(), std::fs::read(&p).unwrap());
    }
    out
}

/// What a refused receipt must leave: no receipt, the capture in `state` with every byte.
fn assert_kept(store: &Store, id: &CaptureId, state: State, before: &BTreeMap<PathBuf, Vec<u8>>) {
    let info = store.info(id).unwrap();
    assert_eq!(info.state, state, "{:?}", info.reason);
    if state == State::Quarantined {
        assert_eq!(info.reason.as_deref(), Some("receipt_invalid"));
    }
    assert!(store.receipts().unwrap().is_empty(), "no receipt recorded");
    assert_eq!(
        &files_of(store.dir()),
        before,
        "every byte of the capture kept"
    );
    // The data key is still there: the capture opens byte for byte.
    let mut out = Vec::new();
    store.read_part(id, PartKind::Front, &mut out).unwrap();
    assert_eq!(out, image("front.jpg"));
}

// ---------------------------------------------------------------------------------------------
// Receipt alterations

/// Decorator: applies `alter` to the signed receipt of every successful commit answer.
struct AlterReceipt<F> {
    inner: HttpTransport,
    alter: F,
}

impl<F: Fn(&mut SignedReceipt) + Send + Sync> Transport for AlterReceipt<F> {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let is_commit = req.method == Method::Put;
            let mut resp = self.inner.send(req, limit).await?;
            if is_commit && (resp.status == 200 || resp.status == 201) {
                let mut signed: SignedReceipt =
                    protocol::decode(&resp.body, 1 << 16, "receipt").unwrap();
                (self.alter)(&mut signed);
                resp.body = protocol::encode(&signed).unwrap();
            }
            Ok(resp)
        })
    }
}

/// Changes the receipt and signs it again with `key` (a key the INE root certified, unless the
/// test says otherwise), so that only the check under test can refuse it.
fn resign(signed: &mut SignedReceipt, key: &ReceiptKey, change: impl FnOnce(&mut Receipt)) {
    let mut r: Receipt = protocol::decode(&signed.receipt, 1 << 16, "receipt").unwrap();
    change(&mut r);
    signed.receipt = protocol::encode(&r).unwrap();
    signed.signature = key
        .signer
        .sign(&protocol::receipt_signing_input(&signed.receipt))
        .to_vec();
    signed.key_cert = Some(key.cert.clone());
}

/// A device captures one support and syncs through `alter`; the receipt must be refused.
async fn refused_receipt<F>(name: &str, state: State, alter: impl FnOnce(&Harness) -> F)
where
    F: Fn(&mut SignedReceipt) + Send + Sync,
{
    let h = Harness::start().await;
    let mut dev = h.store_device(name).await;
    let id = dev.capture_clave(REVOCACION, &clave(1));
    let before = files_of(dev.store.dir());
    let t = AlterReceipt {
        inner: HttpTransport::new(&h.url, &TlsConfig::default()).unwrap(),
        alter: alter(&h),
    };
    let budget = if state == State::Quarantined { 30 } else { 2 };
    let report =
        apoyo_sync::sync::engine::run(&mut dev.store, &t, opts(Duration::from_secs(budget)))
            .await
            .unwrap();
    assert_eq!((report.committed, report.duplicates), (0, 0), "{name}");
    assert!(report.untrusted_receipts >= 1, "{name}: the run reports it");
    assert!(report.receipt_problem.is_some(), "{name}");
    let state_now = dev.store.info(&id).unwrap().state;
    let state = if state == State::Captured && state_now == State::Uploading {
        State::Uploading
    } else {
        state
    };
    assert_kept(&dev.store, &id, state, &before);
    // Nothing was lost: once the answers are honest again, the replayed receipt is trusted.
    if state == State::Quarantined {
        dev.store.retry_quarantined(&id).unwrap();
    }
    let honest = HttpTransport::new(&h.url, &TlsConfig::default()).unwrap();
    let report =
        apoyo_sync::sync::engine::run(&mut dev.store, &honest, opts(Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(report.committed, 1, "{name}: counted once, on the replay");
    assert_eq!(dev.store.info(&id).unwrap().state, State::Purged);
    assert!(dev.store.receipts().unwrap()[0].verified);
}

fn signing_key(h: &Harness) -> ReceiptKey {
    h.ring.receipt[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_signature_byte_is_refused() {
    refused_receipt("flip", State::Quarantined, |_| {
        |s: &mut SignedReceipt| s.signature[7] ^= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_another_capture_is_refused() {
    refused_receipt("other-capture", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| {
            resign(s, &key, |r| {
                r.capture_id = CaptureId::new_v7(time::OffsetDateTime::now_utc())
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_part_hashes_are_refused() {
    refused_receipt("parts", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| resign(s, &key, |r| r.parts[3].sha256[0] ^= 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_reordered_part_is_refused() {
    refused_receipt("part-set", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| resign(s, &key, |r| r.parts.swap(0, 1))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_id_is_refused() {
    refused_receipt("key-id", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| {
            resign(s, &key, |r| r.endpoint_key_id = "0011223344556677".into())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_naming_its_key_by_another_id_is_refused() {
    refused_receipt("cert-key-id", State::Quarantined, |h| {
        let mut key = signing_key(h);
        // The root signed a certificate whose key_id is not its key's id.
        let root = h.root.clone();
        let mut cert = key.info.clone();
        cert.key_id = "0011223344556677".into();
        key.cert = SignedKeyCert::issue(&root, &cert).unwrap();
        move |s: &mut SignedReceipt| {
            resign(s, &key, |r| r.endpoint_key_id = "0011223344556677".into())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_outside_the_anchor_is_refused() {
    refused_receipt("foreign-root", State::Quarantined, |_| {
        // A complete, self-consistent ring under another root.
        let other = Ed25519Secret::generate().unwrap();
        let ring = KeyRing::generate(&other, time::OffsetDateTime::now_utc()).unwrap();
        let key = ring.receipt[0].clone();
        move |s: &mut SignedReceipt| {
            let id = key.info.key_id.clone();
            resign(s, &key, |r| r.endpoint_key_id = id)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_certified_for_sealing_cannot_sign_receipts() {
    refused_receipt("purpose", State::Quarantined, |h| {
        let mut key = signing_key(h);
        let root = h.root.clone();
        let mut cert = key.info.clone();
        cert.purpose = KeyPurpose::Seal;
        key.cert = SignedKeyCert::issue(&root, &cert).unwrap();
        move |s: &mut SignedReceipt| resign(s, &key, |_| {})
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_outside_its_keys_validity_is_refused() {
    refused_receipt("validity", State::Quarantined, |h| {
        let key = signing_key(h);
        let after = key.info.not_after + time::Duration::days(1);
        move |s: &mut SignedReceipt| resign(s, &key, |r| r.counted_at = after)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_of_another_version_is_refused() {
    refused_receipt("version", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| resign(s, &key, |r| r.v = 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_another_device_is_refused() {
    refused_receipt("device-id", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| {
            resign(s, &key, |r| {
                r.device_id = "5d0c4b6e8f1a2b3c4d5e6f708192a3b4".into()
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_another_collector_is_refused() {
    refused_receipt("collector", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| {
            resign(s, &key, |r| {
                r.collector = Collector::Auxiliar("AUX-0001".into())
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_with_another_capture_time_is_refused() {
    refused_receipt("captured-at", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| {
            resign(s, &key, |r| r.captured_at += time::Duration::nanoseconds(1))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_another_sealed_key_is_refused() {
    refused_receipt("sealed-key", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| resign(s, &key, |r| r.sealed_key_sha256[31] ^= 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_another_process_is_refused() {
    refused_receipt("process", State::Quarantined, |h| {
        let key = signing_key(h);
        move |s: &mut SignedReceipt| resign(s, &key, |r| r.process_id = CONSULTA.into())
    })
    .await;
}

/// What a v1 endpoint answers (a receipt without a key certificate): never grounds for
/// deletion, and not the capture's fault either: it stays queued and the run says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_without_an_anchored_key_keeps_the_capture_queued() {
    refused_receipt("no-anchor", State::Captured, |_| {
        |s: &mut SignedReceipt| s.key_cert = None
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The attack of issue 11: a hostile forwarding proxy

/// What the proxy forges with: a key ring under its own root.
struct Attacker {
    upstream: String,
    http: reqwest::Client,
    ring: KeyRing,
    commits_answered: std::sync::atomic::AtomicU32,
}

impl Attacker {
    /// Swaps the receipt key and the certificates of an activation answer for its own.
    fn swap_keys(&self, body: &[u8]) -> Vec<u8> {
        let mut a: ActivateResponse = protocol::decode(body, 1 << 22, "activation").unwrap();
        a.receipt_key = self.ring.receipt[0].info.key;
        a.receipt_key_id = self.ring.receipt[0].info.key_id.clone();
        a.key_certs = self.ring.certs(time::OffsetDateTime::now_utc());
        protocol::encode(&a).unwrap()
    }

    /// A receipt that says exactly what the device committed, signed by the attacker's key.
    fn forge_receipt(&self, body: &[u8]) -> Vec<u8> {
        let signed: SignedCommit = protocol::decode(body, 1 << 16, "commit").unwrap();
        let c: CommitRequest = protocol::decode(&signed.commit, 1 << 16, "commit").unwrap();
        let key = &self.ring.receipt[0];
        let receipt = Receipt {
            v: 1,
            capture_id: c.capture_id,
            process_id: c.process_id.clone(),
            device_id: c.collector.id().to_string(),
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
            counted_at: time::OffsetDateTime::now_utc(),
            endpoint_key_id: key.info.key_id.clone(),
            collector: c.collector.clone(),
            captured_at: c.captured_at,
            sealed_key_sha256: crypto::sha256(&c.sealed_key),
        };
        let receipt = protocol::encode(&receipt).unwrap();
        let signature = key
            .signer
            .sign(&protocol::receipt_signing_input(&receipt))
            .to_vec();
        protocol::encode(&SignedReceipt {
            receipt,
            signature,
            key_cert: Some(key.cert.clone()),
        })
        .unwrap()
    }
}

async fn hostile_proxy(
    axum::extract::State(a): axum::extract::State<Arc<Attacker>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::body::Body;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if parts.method == axum::http::Method::PUT && path.starts_with("/v1/supports/") {
        // Never forwarded: the proxy answers the commit itself.
        a.commits_answered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return axum::response::Response::builder()
            .status(201)
            .header("content-type", protocol::CBOR)
            .body(Body::from(a.forge_receipt(&body)))
            .unwrap();
    }
    let mut fwd = a
        .http
        .request(parts.method.clone(), format!("{}{path}", a.upstream))
        .body(body.to_vec());
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            fwd = fwd.header(k, v);
        }
    }
    let resp = fwd.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = resp.bytes().await.unwrap().to_vec();
    if path == "/v1/devices/activate" && status == 200 {
        bytes = a.swap_keys(&bytes);
    }
    let mut out = axum::response::Response::builder().status(status);
    for (k, v) in &headers {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            out = out.header(k, v);
        }
    }
    out.body(Body::from(bytes)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_proxy_swapping_the_receipt_key_cannot_get_a_capture_purged() {
    let h = Harness::start().await;
    let attacker = Arc::new(Attacker {
        upstream: h.url.clone(),
        http: reqwest::Client::new(),
        ring: KeyRing::generate(
            &Ed25519Secret::generate().unwrap(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap(),
        commits_answered: std::sync::atomic::AtomicU32::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(hostile_proxy)
        .with_state(attacker.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A real device, provisioned with INE's root, talks to "INE" through the proxy.
    let kr = FileKeyGuard::open_or_create(&h.dir.path().join("victim-keyring")).unwrap();
    let mut store = Store::init(
        &h.dir.path().join("victim"),
        &kr,
        &h.provisioning(),
        None,
        StoreOptions::default(),
    )
    .unwrap();
    let t = HttpTransport::new(&proxy_url, &TlsConfig::default()).unwrap();
    apoyo_sync::sync::device::register(
        &mut store,
        &t,
        &proxy_url,
        "victim@example.org",
        apoyo_sync::protocol::Provider::Google,
        &image("front.jpg"),
    )
    .await
    .unwrap();
    let code = h.mailbox_code("victim@example.org").await;
    let resp = apoyo_sync::sync::device::activate(&mut store, &t, &code)
        .await
        .unwrap();
    assert_eq!(
        resp.receipt_key, attacker.ring.receipt[0].info.key,
        "the proxy swapped the key"
    );
    // The swapped certificates do not chain to the provisioned root: none was kept, and the
    // device still seals to INE's provisioned key.
    assert_eq!(store.endpoint_public(), h.endpoint_public());

    let id = store
        .capture(apoyo_sync::NewCapture {
            process_id: REVOCACION.into(),
            model: apoyo_sync::CredentialModel::parse("G").unwrap(),
            fields: apoyo_sync::CardFields {
                clave_elector: clave(1),
                ..Default::default()
            },
            location: None,
            images: images(),
            collector: None,
        })
        .unwrap();
    let before = files_of(store.dir());
    let report: SyncReport =
        apoyo_sync::sync::engine::run(&mut store, &t, opts(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(
        attacker
            .commits_answered
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1,
        "the proxy answered the commit"
    );
    // Not reported committed, not purged, every byte kept, no receipt listed as verified.
    assert_eq!((report.committed, report.duplicates), (0, 0));
    assert_eq!(report.untrusted_receipts, 1);
    assert_kept(&store, &id, State::Quarantined, &before);
    // And indeed the real endpoint never counted it.
    let s = h.stats().await;
    assert_eq!(
        (s["received"].as_u64(), s["counted"].as_u64()),
        (Some(0), Some(0))
    );

    // Straight to INE, the same capture is counted and only then purged.
    store.retry_quarantined(&id).unwrap();
    let direct = HttpTransport::new(&h.url, &TlsConfig::default()).unwrap();
    let report = apoyo_sync::sync::engine::run(&mut store, &direct, opts(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(report.committed, 1);
    assert_eq!(store.info(&id).unwrap().state, State::Purged);
    assert_eq!(h.stats().await["counted"].as_u64(), Some(1));
}

/// The signature the engine makes over its commit is what the endpoint checks; the check is
/// exercised by `device_signatures.rs`. Here: the exact commit bytes travel, so the endpoint
/// can keep them with the signature.
#[test]
fn a_signed_commit_carries_the_exact_signed_bytes() {
    let key = Ed25519Secret::generate().unwrap();
    let commit = CommitRequest {
        v: 1,
        capture_id: CaptureId::new_v7(time::OffsetDateTime::UNIX_EPOCH),
        process_id: "p".into(),
        captured_at: time::OffsetDateTime::UNIX_EPOCH,
        collector: Collector::MiApoyo("d".into()),
        sealed_key: vec![1; 81],
        parts: Vec::new(),
        sent_at: time::OffsetDateTime::UNIX_EPOCH,
        seal_key_id: "0011223344556677".into(),
    };
    let signed = trust::sign_commit(&key, &commit).unwrap();
    assert_eq!(signed.commit, protocol::encode(&commit).unwrap());
    assert_eq!(
        trust::open_signed_commit(&key.public(), &signed).unwrap(),
        commit
    );
    let other = Ed25519Secret::generate().unwrap();
    assert!(trust::open_signed_commit(&other.public(), &signed).is_err());
}
