//! Protocol v1.1: a receipt is grounds for deleting a capture only if it chains to the INE root
//! the app provisioned and says exactly what the device committed (issue 11, ADR 0015).
//!
//! (The attack of issue 11, a hostile forwarding proxy, is in `hostile_proxy.rs`.)
//!
//! - Each refusal of the receipt check, through a transport that alters the real endpoint's
//!   answer to the commit: the capture keeps every byte and is quarantined `receipt_invalid`
//!   (or, with no anchored key at all, stays queued), and nothing is recorded as a receipt.

mod common;

use std::time::Duration;

use apoyo_endpoint::KeyRing;
use apoyo_endpoint::keyring::ReceiptKey;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::sync::transport::{Method, Request, SendFuture};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig, Transport};
use apoyo_sync::wire::trust::{self, KeyPurpose, SignedKeyCert};
use apoyo_sync::wire::{self as protocol, CommitRequest, Receipt, SignedReceipt};
use apoyo_sync::{CaptureId, Collector, State};
use common::kept::*;
use common::*;

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
    let report = apoyo_sync::testkit::sync::engine::run(
        &mut dev.store,
        &t,
        opts(Duration::from_secs(budget)),
    )
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
    let report = apoyo_sync::testkit::sync::engine::run(
        &mut dev.store,
        &honest,
        opts(Duration::from_secs(30)),
    )
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
