//! The attack of issue 11, reproduced: a hostile forwarding proxy on loopback, between a real
//! device and the real endpoint, swaps the receipt key (and the key certificates) in the
//! activation answer and answers `PUT /v1/supports/{id}` itself with a receipt signed by its own
//! key. With protocol v1 the device reported `committed: 1` and purged a support the endpoint
//! never recorded. With v1.1 the receipt does not chain to the INE root the app provisioned: the
//! capture is neither reported committed nor purged, and every byte is kept.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apoyo_endpoint::KeyRing;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::{self, Ed25519Secret};
use apoyo_sync::testkit::sync::{HttpTransport, SyncReport, TlsConfig};
use apoyo_sync::wire::{
    self as protocol, ActivateResponse, CommitRequest, Receipt, ReceiptPart, ReceiptResult,
    SignedCommit, SignedReceipt,
};
use apoyo_sync::{FileKeyGuard, State};
use common::kept::*;
use common::*;

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
    apoyo_sync::testkit::sync::device::register(
        &mut store,
        &t,
        &proxy_url,
        "victim@example.org",
        apoyo_sync::wire::Provider::Google,
        &image("front.jpg"),
    )
    .await
    .unwrap();
    let code = h.mailbox_code("victim@example.org").await;
    let resp = apoyo_sync::testkit::sync::device::activate(&mut store, &t, &code)
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
        apoyo_sync::testkit::sync::engine::run(&mut store, &t, opts(Duration::from_secs(30)))
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
    let report =
        apoyo_sync::testkit::sync::engine::run(&mut store, &direct, opts(Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(report.committed, 1);
    assert_eq!(store.info(&id).unwrap().state, State::Purged);
    assert_eq!(h.stats().await["counted"].as_u64(), Some(1));
}
