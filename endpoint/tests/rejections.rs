//! Commits the endpoint rejects for their content: tampered or foreign ciphertext, a manifest
//! that disagrees, and the process rules, applied by the endpoint itself even when the device
//! was told (wrongly) that a capture was fine. Rejections are recorded: replays get them again.

mod common;

use apoyo_sync::wire::Reason;
use apoyo_sync::{CardFields, Collector, PartKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_part_is_undecryptable_and_the_answer_is_kept() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(1));
    let mut b = dev.bundle(&id);
    // Flip a byte of the selfie; the declared SHA-256 is that of the flipped bytes, so only the
    // AEAD can notice.
    let selfie = b.part_mut(PartKind::Selfie);
    let n = selfie.len();
    selfie[n / 2] ^= 0x01;
    let first = h.deliver(&dev.token, &b).await;
    first.refused(422, Reason::Undecryptable);
    assert!(
        first.error().unwrap().detail.contains("selfie"),
        "{:?}",
        first.error()
    );
    let again = h.deliver(&dev.token, &b).await;
    assert_eq!((again.status, &again.body), (422, &first.body));
    let s = h.stats().await;
    assert_eq!(
        (s["received"].as_u64(), s["counted"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(s["rejected"]["undecryptable"], 1);
    assert_eq!(s["by_process"][REVOCACION]["rejected"], 1);
    // The untampered capture under the same id is now a conflict, not a second chance.
    h.deliver(&dev.token, &dev.bundle(&id))
        .await
        .refused(409, Reason::IdempotencyConflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_or_foreign_ciphertext_is_undecryptable() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    // The back's ciphertext sent as the front (kind is bound into every chunk).
    let id = dev.capture_clave(REVOCACION, &clave(2));
    let mut b = dev.bundle(&id);
    let back = b.part(PartKind::Back).to_vec();
    *b.part_mut(PartKind::Front) = back;
    h.deliver(&dev.token, &b)
        .await
        .refused(422, Reason::Undecryptable);
    // Another capture's sealed key.
    let id3 = dev.capture_clave(REVOCACION, &clave(3));
    let id4 = dev.capture_clave(REVOCACION, &clave(4));
    let mut b3 = dev.bundle(&id3);
    b3.sealed_key = dev.bundle(&id4).sealed_key;
    h.deliver(&dev.token, &b3)
        .await
        .refused(422, Reason::Undecryptable);
    // A truncated sealed key.
    let id5 = dev.capture_clave(REVOCACION, &clave(5));
    let mut b5 = dev.bundle(&id5);
    b5.sealed_key.truncate(40);
    h.deliver(&dev.token, &b5)
        .await
        .refused(422, Reason::Undecryptable);
    // A capture sealed by another device, delivered with this device's token (crediting this
    // device, so that the v1.1 collector check passes and the seal is what is refused).
    let other = RawDevice::new();
    let foreign = other.bundle(
        &h.endpoint_public(),
        RawSpec::new(REVOCACION, &clave(6), dev.store.device_id()),
    );
    h.deliver(&dev.token, &foreign)
        .await
        .refused(422, Reason::Undecryptable);
    // None of these was counted; the genuine captures still are.
    assert_eq!(h.deliver(&dev.token, &dev.bundle(&id4)).await.status, 201);
    let s = h.stats().await;
    assert_eq!(
        (
            s["counted"].as_u64(),
            s["rejected"]["undecryptable"].as_u64()
        ),
        (Some(1), Some(4))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_applies_its_own_process_rules() {
    let endpoint_catalog = r#"[
      {"id":"revocacion-2022","name":"R","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national"},
      {"id":"estatal","name":"E","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":{"entidades":[9]}},
      {"id":"seccional","name":"S","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01",
       "scope":{"secciones":[{"entidad":9,"seccion":1234}]}},
      {"id":"cerrado","name":"C","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national",
       "opens":"2020-01-01T00:00:00Z","closes":"2020-02-01T00:00:00Z"}
    ]"#;
    // What the device was (wrongly) told: every rule looser, plus a process INE does not run.
    let device_catalog = r#"[
      {"id":"revocacion-2022","name":"R","accepted_models":["C","D","E","F","G","H"],"vigencia_cutoff":"2000-01-01","scope":"national"},
      {"id":"estatal","name":"E","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national"},
      {"id":"seccional","name":"S","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national"},
      {"id":"cerrado","name":"C","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national"},
      {"id":"fantasma","name":"F","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national"}
    ]"#;
    let h = Harness::start_with(Opts {
        processes: processes(endpoint_catalog),
        ..Default::default()
    })
    .await;
    let mut dev = h.store_device("a").await;
    dev.store.put_processes(&processes(device_catalog)).unwrap();
    let f = |i: usize| CardFields {
        clave_elector: clave(i),
        ..Default::default()
    };
    let cases = [
        (dev.capture(REVOCACION, "E", f(1)), Reason::ModelNotAccepted),
        (
            dev.capture(
                REVOCACION,
                "G",
                CardFields {
                    vigencia: Some(2019),
                    ..f(2)
                },
            ),
            Reason::CredentialExpired,
        ),
        (
            dev.capture(
                "estatal",
                "G",
                CardFields {
                    entidad: Some(15),
                    ..f(3)
                },
            ),
            Reason::OutOfScope,
        ),
        (
            dev.capture(
                "seccional",
                "G",
                CardFields {
                    entidad: Some(9),
                    seccion: Some(999),
                    ..f(4)
                },
            ),
            Reason::OutOfScope,
        ),
        (dev.capture("cerrado", "G", f(5)), Reason::ProcessClosed),
        (dev.capture("fantasma", "G", f(6)), Reason::ProcessUnknown),
    ];
    for (id, reason) in &cases {
        let b = dev.bundle(id);
        let a = h.deliver(&dev.token, &b).await;
        a.refused(422, *reason);
        // Recorded: a replay gets the same bytes.
        let again = h.deliver(&dev.token, &b).await;
        assert_eq!((again.status, &again.body), (422, &a.body), "{reason:?}");
    }
    // Within the rules: counted.
    let ok = [
        dev.capture(
            REVOCACION,
            "H",
            CardFields {
                vigencia: Some(2030),
                ..f(7)
            },
        ),
        dev.capture(
            "estatal",
            "G",
            CardFields {
                entidad: Some(9),
                ..f(8)
            },
        ),
        dev.capture(
            "seccional",
            "G",
            CardFields {
                entidad: Some(9),
                seccion: Some(1234),
                ..f(9)
            },
        ),
    ];
    for id in &ok {
        assert_eq!(h.deliver(&dev.token, &dev.bundle(id)).await.status, 201);
    }
    let s = h.stats().await;
    assert_eq!(
        (s["received"].as_u64(), s["counted"].as_u64()),
        (Some(9), Some(3))
    );
    assert_eq!(
        s["rejected"],
        serde_json::json!({"model_not_accepted": 1, "credential_expired": 1, "out_of_scope": 2, "process_closed": 1, "process_unknown": 1})
    );
    assert_eq!(
        s["by_process"]["estatal"],
        serde_json::json!({"counted": 1, "duplicates": 0, "rejected": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_disagrees_or_an_invalid_card_is_rejected() {
    let h = Harness::start().await;
    let (dev, token) = h.raw_device("a").await;
    let ep = h.endpoint_public();
    let spec = || RawSpec::new(REVOCACION, &clave(1), &dev.id());

    let mut s = spec();
    s.tweak_manifest = Some(|m| m.process_id = CONSULTA.into());
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::ManifestMismatch);
    let mut s = spec();
    s.tweak_manifest = Some(|m| m.captured_at -= time::Duration::seconds(1));
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::ManifestMismatch);
    let mut s = spec();
    s.tweak_manifest =
        Some(|m| m.capture_id = apoyo_sync::CaptureId::new_v7(time::OffsetDateTime::UNIX_EPOCH));
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::ManifestMismatch);
    let mut s = spec();
    s.tweak_manifest = Some(|m| m.collector = Collector::Auxiliar("someone-else".into()));
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::ManifestMismatch);
    let mut s = spec();
    s.manifest_bytes = Some(b"\xa1\x61v\x02 not a manifest".to_vec());
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::ManifestMismatch);

    // Card fields the device should never have let through.
    let mut s = spec();
    s.fields.clave_elector = "NOT-A-CLAVE".into();
    let a = h.deliver(&token, &dev.bundle(&ep, s)).await;
    a.refused(422, Reason::CardInvalid);
    assert!(
        !a.error().unwrap().detail.contains("NOT-A-CLAVE"),
        "the value must not be echoed"
    );
    let mut s = spec();
    s.fields.clave_elector = "ABCXYZ90130101H000".into(); // the right shape, but month 13
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::CardInvalid);
    let mut s = spec();
    s.fields.seccion = Some(0);
    h.deliver(&token, &dev.bundle(&ep, s))
        .await
        .refused(422, Reason::CardInvalid);

    // A consistent one from the same hand-made device is counted.
    assert_eq!(
        h.deliver(&token, &dev.bundle(&ep, spec())).await.status,
        201
    );
    let st = h.stats().await;
    assert_eq!(
        st["rejected"],
        serde_json::json!({"manifest_mismatch": 5, "card_invalid": 3})
    );
}
