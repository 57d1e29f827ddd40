//! The main flow against a real endpoint: a device made with the core crate registers,
//! activates, uploads its parts with tus and commits; receipts, replays, conflicts, the
//! duplicate rule, concurrency, restarts and stats.

mod common;

use apoyo_sync::testkit::crypto::{self, receipt};
use apoyo_sync::wire::{self as protocol, Reason, Receipt, ReceiptResult, SignedReceipt};
use apoyo_sync::{CardFields, PartKind};
use common::*;

fn open_receipt(h: &Harness, body: &[u8]) -> Receipt {
    let signed: SignedReceipt = protocol::decode(body, 1 << 16, "receipt").unwrap();
    receipt::verify(
        &h.receipt_public,
        &protocol::receipt_signing_input(&signed.receipt),
        &signed.signature,
    )
    .expect("the signature verifies");
    protocol::decode(&signed.receipt, 1 << 16, "receipt").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_is_counted_with_a_verifiable_receipt() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let activation = dev.store.activation().unwrap().unwrap();
    assert_eq!(activation.receipt_public, h.receipt_public);
    let id = dev.capture_clave(REVOCACION, &clave(1));
    let b = dev.bundle(&id);
    // Several PATCHes per part (16 KiB each), HEAD checked after each.
    let parts = h.upload_all(&dev.token, &b, 16 * 1024).await;
    let a = h.commit(&dev.token, &b.commit_request(parts)).await;
    assert_eq!(a.status, 201, "{:?}", a.error());
    assert_eq!(a.header("content-type"), Some(protocol::CBOR));

    let r = open_receipt(&h, &a.body);
    assert_eq!(r.capture_id, id);
    assert_eq!(r.process_id, REVOCACION);
    assert_eq!(r.device_id, dev.store.device_id());
    assert_eq!(r.result, ReceiptResult::Counted);
    assert_eq!(r.first_capture_id, None);
    assert_eq!(r.endpoint_key_id, activation.receipt_key_id);
    assert_eq!(
        r.endpoint_key_id,
        hex::encode(&crypto::sha256(&h.receipt_public)[..8])
    );
    let stored = dev.store.parts(&id).unwrap();
    assert_eq!(r.parts.len(), 5);
    for p in &stored {
        assert!(
            r.parts
                .iter()
                .any(|q| q.kind == p.kind && q.sha256 == p.sha256),
            "{:?}",
            p.kind
        );
    }
    let age = time::OffsetDateTime::now_utc() - r.counted_at;
    assert!(age >= time::Duration::ZERO && age < time::Duration::minutes(1));
    // A tampered signature does not verify.
    let mut signed: SignedReceipt = protocol::decode(&a.body, 1 << 16, "receipt").unwrap();
    signed.signature[0] ^= 1;
    assert!(
        receipt::verify(
            &h.receipt_public,
            &protocol::receipt_signing_input(&signed.receipt),
            &signed.signature
        )
        .is_err()
    );

    // The endpoint keeps exactly the ciphertext it counted, and no upload is left. The support
    // has one folder, named for the capture, the device and the decision attempt.
    let prefix = format!("{id}-{}-", dev.store.device_id());
    let folders: Vec<_> = std::fs::read_dir(h.blob_dir().join("supports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    for (kind, bytes) in &b.parts {
        let kept = std::fs::read(folders[0].join(format!("{}.part", kind.name()))).unwrap();
        assert_eq!(&kept, bytes, "{kind:?}");
    }
    assert_eq!(
        std::fs::read_dir(h.blob_dir().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    let s = h.stats().await;
    assert_eq!(
        (
            s["received"].as_u64(),
            s["counted"].as_u64(),
            s["duplicates"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(s["by_process"][REVOCACION]["counted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_gets_the_identical_bytes_even_through_new_uploads() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(2));
    let b = dev.bundle(&id);
    let parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    let req = b.commit_request(parts);
    let first = h.commit(&dev.token, &req).await;
    assert_eq!(first.status, 201);
    let again = h.commit(&dev.token, &req).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    // The device lost track of its uploads and sent the parts again: new URLs, same content.
    let parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    assert_ne!(parts[0].upload, req.parts[0].upload);
    let third = h.commit(&dev.token, &b.commit_request(parts)).await;
    assert_eq!((third.status, &third.body), (201, &first.body));
    // Replays are not new supports.
    let s = h.stats().await;
    assert_eq!(
        (s["received"].as_u64(), s["counted"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_with_other_content_is_a_conflict() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(3));
    let b = dev.bundle(&id);
    let parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    let req = b.commit_request(parts);
    assert_eq!(h.commit(&dev.token, &req).await.status, 201);
    let mut other = req.clone();
    other.captured_at += time::Duration::seconds(1);
    h.commit(&dev.token, &other)
        .await
        .refused(409, Reason::IdempotencyConflict);
    let mut other = req.clone();
    other.parts[2].sha256[0] ^= 1;
    h.commit(&dev.token, &other)
        .await
        .refused(409, Reason::IdempotencyConflict);
    // v1.1: another device presenting the same capture id is no replay of this one, and is
    // refused for what it is (here: it credits another device), never as this id's owner.
    let dev_b = h.store_device("b").await;
    h.commit(&dev_b.token, &req)
        .await
        .refused(422, Reason::CollectorInvalid);
    // The original still replays.
    assert_eq!(h.commit(&dev.token, &req).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_citizen_on_a_second_device_is_a_duplicate_that_does_not_name_the_first() {
    let h = Harness::start().await;
    let mut a = h.store_device("a").await;
    let mut b = h.store_device("b").await;
    let first = a.capture_clave(REVOCACION, &clave(7));
    let second = b.capture_clave(REVOCACION, &clave(7));
    let other_process = b.capture_clave(CONSULTA, &clave(7));
    let other_citizen = b.capture_clave(REVOCACION, &clave(8));

    let ra = h.deliver(&a.token, &a.bundle(&first)).await;
    assert_eq!(ra.status, 201);
    let rb = h.deliver(&b.token, &b.bundle(&second)).await;
    assert_eq!(rb.status, 200, "{:?}", rb.error());
    let r = open_receipt(&h, &rb.body);
    // v1.1: another device and another collector learn "duplicate", never the first capture's
    // id (it would be an oracle for "did this citizen support this aspirant?").
    assert_eq!(
        (r.capture_id, r.result, r.first_capture_id),
        (second, ReceiptResult::Duplicate, None)
    );
    let _ = first;
    assert_eq!(r.device_id, b.store.device_id());
    // The duplicate key is per process, and per citizen.
    assert_eq!(
        open_receipt(
            &h,
            &h.deliver(&b.token, &b.bundle(&other_process)).await.body
        )
        .result,
        ReceiptResult::Counted
    );
    assert_eq!(
        open_receipt(
            &h,
            &h.deliver(&b.token, &b.bundle(&other_citizen)).await.body
        )
        .result,
        ReceiptResult::Counted
    );
    // A replay of the duplicate answers the same.
    let again = h.deliver(&b.token, &b.bundle(&second)).await;
    assert_eq!((again.status, &again.body), (200, &rb.body));

    let s = h.stats().await;
    assert_eq!(
        (
            s["received"].as_u64(),
            s["counted"].as_u64(),
            s["duplicates"].as_u64()
        ),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(
        s["by_process"][REVOCACION],
        serde_json::json!({"counted": 2, "duplicates": 1, "rejected": 0})
    );
    assert_eq!(
        s["by_process"][CONSULTA],
        serde_json::json!({"counted": 1, "duplicates": 0, "rejected": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_capture_count_it_once() {
    let h = std::sync::Arc::new(Harness::start().await);
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(9));
    let b = dev.bundle(&id);
    let req = b.commit_request(h.upload_all(&dev.token, &b, 64 * 1024).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (h, req, token) = (h.clone(), req.clone(), dev.token.clone());
        tasks.push(tokio::spawn(async move { h.commit(&token, &req).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(
        answers
            .iter()
            .all(|a| a.status == 201 && a.body == answers[0].body)
    );
    let s = h.stats().await;
    assert_eq!(
        (s["received"].as_u64(), s["counted"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_tokens_answers_and_uploads() {
    let mut h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(10));
    let b = dev.bundle(&id);
    let req = b.commit_request(h.upload_all(&dev.token, &b, 64 * 1024).await);
    let first = h.commit(&dev.token, &req).await;
    assert_eq!(first.status, 201);
    // An upload half done before the restart.
    let id2 = dev.capture(
        REVOCACION,
        "H",
        CardFields {
            clave_elector: clave(11),
            ..Default::default()
        },
    );
    let b2 = dev.bundle(&id2);
    let created = h
        .create_upload(
            &dev.token,
            &id2,
            PartKind::Front,
            b2.part(PartKind::Front).len() as u64,
        )
        .await;
    let path = created.header("location").unwrap().to_string();
    let half = &b2.part(PartKind::Front)[..1000];
    assert_eq!(h.patch(&dev.token, &path, 0, half, None).await.status, 204);
    // A stray file (as a crash between writing bytes and their row would leave) is removed.
    let stray = h
        .blob_dir()
        .join("uploads")
        .join("00000000000000000000000000000000");
    std::fs::write(&stray, b"junk").unwrap();
    // Left by a crash two hours ago (on PostgreSQL the folder is shared, and only files older
    // than an hour that no row names are a crash's: younger ones may be another replica's).
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();

    h.restart().await;
    assert!(!stray.exists());
    let again = h.commit(&dev.token, &req).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    let head = h.head(&dev.token, &path).await;
    assert_eq!(
        (head.status, head.header("upload-offset")),
        (200, Some("1000"))
    );
    assert_eq!(h.stats().await["counted"], 1);
}
