//! Protocol v1.1 bindings at the real endpoint over loopback (issue 11, ADR 0015): the device's
//! signature over its commit, the collector check, idempotency per (device, capture id), what a
//! duplicate receipt tells whom, the duplicate key and the seal-key ring across a rotation, and
//! phones whose clock is an hour or a year off.

mod common;

use std::time::Duration;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::sync::{BackoffPolicy, HttpTransport, SyncOptions, TlsConfig};
use apoyo_sync::wire::trust::sign_commit;
use apoyo_sync::wire::{self as protocol, Reason, Receipt, ReceiptResult, SignedReceipt};
use apoyo_sync::{CaptureId, Collector, State};
use common::*;
use time::macros::datetime;

fn receipt_of(body: &[u8]) -> Receipt {
    let signed: SignedReceipt = protocol::decode(body, 1 << 16, "receipt").unwrap();
    protocol::decode(&signed.receipt, 1 << 16, "receipt").unwrap()
}

/// A raw device, registered and activated (optionally as an auxiliar).
async fn raw(h: &Harness, name: &str, auxiliar: Option<&str>) -> (RawDevice, String) {
    let mut dev = RawDevice::new();
    dev.auxiliar_id = auxiliar.map(str::to_string);
    let email = format!("{name}@example.org");
    let a = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&dev.register_request(&h.endpoint_public(), &email)).unwrap(),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.error());
    let code = h.mailbox_code(&email).await;
    let a = h
        .post_cbor(
            "/v1/devices/activate",
            protocol::encode(&dev.activate_request(&h.endpoint_public(), &code)).unwrap(),
        )
        .await;
    if a.status != 200 {
        return (dev, format!("refused:{:?}", a.error().map(|e| e.reason)));
    }
    let resp: protocol::ActivateResponse = protocol::decode(&a.body, 1 << 22, "act").unwrap();
    h.signers
        .lock()
        .unwrap()
        .insert(resp.token.clone(), dev.signer.clone());
    (dev, resp.token)
}

fn spec(dev: &RawDevice, clave_i: usize) -> RawSpec {
    RawSpec::new(REVOCACION, &clave(clave_i), &dev.id())
}

// ---------------------------------------------------------------------------------------------
// The device's signature

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_device_signature_does_not_verify_is_refused() {
    let h = Harness::start().await;
    let (dev, token) = raw(&h, "a", None).await;
    let b = dev.bundle(&h.endpoint_public(), spec(&dev, 1));
    let req = b.commit_request(h.upload_all(&token, &b, 64 * 1024).await);
    // Signed by another key (say, whoever holds INE's seal key and forges "from" this device).
    let forged = sign_commit(&Ed25519Secret::generate().unwrap(), &req).unwrap();
    h.commit_body(&token, &b.id, protocol::encode(&forged).unwrap())
        .await
        .refused(403, Reason::CommitSignatureInvalid);
    // The right key, one byte of the signature flipped.
    let mut flipped = sign_commit(&dev.signer, &req).unwrap();
    flipped.device_signature[10] ^= 1;
    h.commit_body(&token, &b.id, protocol::encode(&flipped).unwrap())
        .await
        .refused(403, Reason::CommitSignatureInvalid);
    // The right signature over other bytes (the commit changed after signing).
    let mut altered = sign_commit(&dev.signer, &req).unwrap();
    let mut other = req.clone();
    other.process_id = CONSULTA.into();
    altered.commit = protocol::encode(&other).unwrap();
    h.commit_body(&token, &b.id, protocol::encode(&altered).unwrap())
        .await
        .refused(403, Reason::CommitSignatureInvalid);
    assert_eq!(
        h.stats().await["received"].as_u64(),
        Some(0),
        "nothing recorded"
    );
    // Signed by the device: counted, and the endpoint keeps the signed bytes.
    assert_eq!(h.commit(&token, &req).await.status, 201);
    let row = h
        .query(
            "SELECT signed_commit, device_signature FROM supports WHERE capture_id = ?1",
            Some(&b.id.to_string()),
        )
        .await;
    let (commit, sig): (Vec<u8>, Vec<u8>) = (row[0][0].bytes(), row[0][1].bytes());
    assert_eq!(commit, protocol::encode(&req).unwrap());
    assert!(
        apoyo_sync::testkit::crypto::anchor::verify_ed25519(
            &dev.signer.public(),
            &protocol::trust::commit_signing_input(&commit),
            &sig
        )
        .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_device_is_told_to_upgrade_and_nothing_is_recorded() {
    let h = Harness::start().await;
    // A v1 activation: no signing key, the v1 proof.
    let dev = RawDevice::new();
    let email = "v1@example.org";
    let a = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&dev.register_request(&h.endpoint_public(), email)).unwrap(),
        )
        .await;
    assert_eq!(a.status, 201);
    let code = h.mailbox_code(email).await;
    let mut req = dev.activate_request(&h.endpoint_public(), &code);
    req.signing_public = None;
    req.proof = protocol::activation_proof(
        &dev.identity.diffie_hellman(&h.endpoint_public().0),
        &code,
        &req.nonce,
        &dev.identity.public(),
    )
    .unwrap();
    let a = h
        .post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await;
    a.refused(426, Reason::UpgradeRequired);
    // A v1 commit (a bare CommitRequest) from an activated device.
    let (dev, token) = raw(&h, "b", None).await;
    let b = dev.bundle(&h.endpoint_public(), spec(&dev, 2));
    let req = b.commit_request(h.upload_all(&token, &b, 64 * 1024).await);
    h.commit_body(&token, &b.id, protocol::encode(&req).unwrap())
        .await
        .refused(426, Reason::UpgradeRequired);
    // A v1 device reads the unknown code as `other`: it retries, it never quarantines.
    let as_v1: protocol::Reason = serde_json::from_str("\"some_v2_reason\"").unwrap();
    assert_eq!(as_v1.action(), protocol::Action::Retry);
    assert_eq!(h.stats().await["received"].as_u64(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// The collector

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mi_apoyo_capture_must_credit_the_committing_device() {
    let h = Harness::start().await;
    let (dev, token) = raw(&h, "a", None).await;
    let (other, _) = raw(&h, "b", None).await;
    let mut s = spec(&dev, 1);
    s.collector = Collector::MiApoyo(other.id());
    let b = dev.bundle(&h.endpoint_public(), s);
    h.deliver(&token, &b)
        .await
        .refused(422, Reason::CollectorInvalid);
    assert_eq!(h.stats().await["received"].as_u64(), Some(0));
    let ok = dev.bundle(&h.endpoint_public(), spec(&dev, 1));
    assert_eq!(h.deliver(&token, &ok).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auxiliar_id_is_bound_to_the_device_key_that_activated_with_it() {
    let h = Harness::start().await;
    let (aux, aux_token) = raw(&h, "aux", Some("AUX-0001")).await;
    let as_aux = |dev: &RawDevice, i: usize, id: &str| {
        let mut s = spec(dev, i);
        s.collector = Collector::Auxiliar(id.into());
        dev.bundle(&h.endpoint_public(), s)
    };
    assert_eq!(
        h.deliver(&aux_token, &as_aux(&aux, 1, "AUX-0001"))
            .await
            .status,
        201
    );
    // Another device key cannot take the id at activation...
    let (_, refused) = raw(&h, "thief", Some("AUX-0001")).await;
    assert_eq!(
        refused,
        format!("refused:{:?}", Some(Reason::CollectorInvalid))
    );
    // ... nor credit it, nor an id no device activated with, nor free text.
    let (thief, thief_token) = raw(&h, "thief2", None).await;
    for (i, id) in ["AUX-0001", "AUX-9999", "Juan Perez", "aux-0001", "AB"]
        .iter()
        .enumerate()
    {
        h.deliver(&thief_token, &as_aux(&thief, 10 + i, id))
            .await
            .refused(422, Reason::CollectorInvalid);
    }
    // A free-text auxiliar id is refused at activation too.
    let (_, refused) = raw(&h, "free", Some("María López")).await;
    assert_eq!(
        refused,
        format!("refused:{:?}", Some(Reason::CollectorInvalid))
    );
    let s = h.stats().await;
    assert_eq!(
        (s["received"].as_u64(), s["counted"].as_u64()),
        (Some(1), Some(1))
    );
}

// ---------------------------------------------------------------------------------------------
// Idempotency per device, and what a duplicate receipt discloses

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_device_reusing_a_capture_id_never_blocks_the_owner() {
    let h = Harness::start().await;
    let (victim, victim_token) = raw(&h, "victim", None).await;
    let (attacker, attacker_token) = raw(&h, "attacker", None).await;
    let genuine = victim.bundle(&h.endpoint_public(), spec(&victim, 1));
    // The attacker learned the capture id and commits garbage under it first.
    let mut garbage = attacker.bundle(&h.endpoint_public(), spec(&attacker, 2));
    garbage.id = genuine.id;
    let a = h.deliver(&attacker_token, &garbage).await;
    assert_eq!(a.status, 422, "{:?}", a.error());
    // The owner's support is counted all the same, and replays as its own.
    let first = h.deliver(&victim_token, &genuine).await;
    assert_eq!(first.status, 201, "{:?}", first.error());
    assert_eq!(receipt_of(&first.body).device_id, victim.id());
    let again = h.deliver(&victim_token, &genuine).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    // And the attacker's record answers only the attacker.
    assert_eq!(h.deliver(&attacker_token, &garbage).await.body, a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_names_the_counted_capture_only_to_its_own_device() {
    let h = Harness::start().await;
    let (a, a_token) = raw(&h, "a", None).await;
    let (b, b_token) = raw(&h, "b", None).await;
    let first = a.bundle(&h.endpoint_public(), spec(&a, 7));
    assert_eq!(h.deliver(&a_token, &first).await.status, 201);
    // The same device (and so the same Mi Apoyo collector) again: told which one counted.
    let mine = a.bundle(&h.endpoint_public(), spec(&a, 7));
    let r = receipt_of(&h.deliver(&a_token, &mine).await.body);
    assert_eq!(
        (r.result, r.first_capture_id),
        (ReceiptResult::Duplicate, Some(first.id))
    );
    // Another device: "duplicate", and nothing about whose or which.
    let theirs = b.bundle(&h.endpoint_public(), spec(&b, 7));
    let answer = h.deliver(&b_token, &theirs).await;
    assert_eq!(answer.status, 200);
    let r = receipt_of(&answer.body);
    assert_eq!(
        (r.result, r.first_capture_id),
        (ReceiptResult::Duplicate, None)
    );
    assert!(
        !answer
            .body
            .windows(16)
            .any(|w| w == first.id.as_bytes().as_slice()),
        "the first capture id appears nowhere in the answer"
    );
}

// ---------------------------------------------------------------------------------------------
// Key rotation

fn fast() -> SyncOptions {
    SyncOptions {
        budget: Duration::from_secs(30),
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        seed: Some(3),
        progress: None,
        control: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_citizen_counts_once_across_a_seal_key_rotation_and_old_seals_still_open() {
    let mut h = Harness::start().await;
    let mut a = h.store_device("a").await;
    let before = a.capture_clave(REVOCACION, &clave(1));
    let sealed_old = a.capture_clave(REVOCACION, &clave(2));
    let t = HttpTransport::new(&h.url, &TlsConfig::default()).unwrap();
    // Deliver only the first one before the rotation.
    let parts = h.upload_all(&a.token, &a.bundle(&before), 64 * 1024).await;
    assert_eq!(
        h.commit(&a.token, &a.bundle(&before).commit_request(parts))
            .await
            .status,
        201
    );
    assert_eq!(
        a.bundle(&sealed_old).seal_key_id,
        h.endpoint_public().key_id()
    );

    h.rotate(time::OffsetDateTime::now_utc()).await;
    let t2 = HttpTransport::new(&h.url, &TlsConfig::default()).unwrap();
    drop(t);
    // A device activated after the rotation learns the new seal key from its certificate and
    // seals to it; the same citizen is a duplicate (the duplicate key is the endpoint's own).
    let mut b = h.store_device("b").await;
    assert_eq!(b.store.endpoint_public(), h.ring.seal[1].secret.public());
    let same_citizen = b.capture_clave(REVOCACION, &clave(1));
    assert_eq!(
        b.bundle(&same_citizen).seal_key_id,
        h.ring.seal[1].info.key_id
    );
    let report = apoyo_sync::testkit::sync::engine::run(&mut b.store, &t2, fast())
        .await
        .unwrap();
    assert_eq!((report.committed, report.duplicates), (0, 1));
    // The support sealed to the old key still opens and counts, through the device's engine.
    let report = apoyo_sync::testkit::sync::engine::run(&mut a.store, &t2, fast())
        .await
        .unwrap();
    assert_eq!((report.committed, report.duplicates), (2, 0), "{report:?}");
    assert_eq!(a.store.info(&sealed_old).unwrap().state, State::Purged);
    // Receipts signed by the new receipt key verify against the root, and so does the one
    // replayed for the first capture (signed by the old key before the rotation).
    for store in [&a.store, &b.store] {
        let kept = store.receipts().unwrap();
        assert!(!kept.is_empty());
        assert!(kept.iter().all(|r| r.verified), "{kept:?}");
    }
    let s = h.stats().await;
    assert_eq!(
        (s["counted"].as_u64(), s["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    // The device recorded its clock's offset from the endpoint's Date header.
    let offset = a.store.clock_offset().unwrap().expect("an offset");
    assert!(offset.abs() < time::Duration::seconds(5), "{offset}");
}

// ---------------------------------------------------------------------------------------------
// Device clocks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_an_hour_or_a_year_off_is_judged_on_the_corrected_time() {
    let now = datetime!(2021-11-20 11:30 UTC);
    let clock = ManualClock::new(now);
    let mut o = Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    };
    o.processes = processes(
        r#"[{"id":"ventana","name":"Two hours","accepted_models":["G","H"],"vigencia_cutoff":"2021-01-01",
             "scope":"national","opens":"2021-11-20T10:00:00Z","closes":"2021-11-20T12:00:00Z"}]"#,
    );
    let h = Harness::start_with(o).await;
    let (dev, token) = raw(&h, "a", None).await;
    // (device clock's error, capture time on the true clock, expected)
    let hour = time::Duration::hours(1);
    let year = datetime!(2021-11-20 11:30 UTC) - datetime!(2020-11-20 11:30 UTC);
    let cases = [
        (hour, datetime!(2021-11-20 11:10 UTC), 201),
        (-year, datetime!(2021-11-20 10:05 UTC), 201),
        (year, datetime!(2021-11-20 11:00 UTC), 201),
        // A right clock and a capture truly before the opening: closed, as before.
        (time::Duration::ZERO, datetime!(2021-11-20 09:50 UTC), 422),
        // A small error (under 5 minutes) is taken as it is: no correction recorded.
        (
            time::Duration::minutes(4),
            datetime!(2021-11-20 11:10 UTC),
            201,
        ),
    ];
    for (i, (error, true_time, expected)) in cases.iter().enumerate() {
        let mut s = RawSpec::new("ventana", &clave(i), &dev.id());
        s.captured_at = *true_time + *error;
        let b = dev.bundle(&h.endpoint_public(), s);
        let mut req = b.commit_request(h.upload_all(&token, &b, 64 * 1024).await);
        req.sent_at = now + *error;
        let a = h.commit(&token, &req).await;
        assert_eq!(a.status, *expected, "case {i}: {:?}", a.error());
        if *expected == 422 {
            assert_eq!(a.reason(), Reason::ProcessClosed);
        } else {
            // The receipt says the capture time as the device committed it.
            assert_eq!(receipt_of(&a.body).captured_at, req.captured_at);
        }
        // Both times and the skew are on record.
        let row = h
            .query(
                "SELECT sent_time, skew_seconds FROM supports WHERE capture_id = ?1",
                Some(&CaptureId::to_string(&b.id)),
            )
            .await;
        let (sent, skew): (String, Option<i64>) = (row[0][0].text(), row[0][1].int());
        assert!(!sent.is_empty());
        let expected_skew =
            (error.abs() > time::Duration::minutes(5)).then(|| -error.whole_seconds());
        assert_eq!(skew, expected_skew, "case {i}");
    }
}
