//! Issue 17, device side: personal data and tokens never reach `Debug` output or error text,
//! image checks use whole signatures, and an unknown process id is echoed escaped.

mod common;

use std::time::Duration;

use apoyo_sync::testkit::model::{CardFields, Location, Manifest, PartKind};
use apoyo_sync::testkit::store::Activation;
use apoyo_sync::testkit::sync::transport::{Method, Request};
use apoyo_sync::wire::{ActivateRequest, ActivateResponse, Provider, RegisterRequest};
use apoyo_sync::{CaptureId, Error, wire::validate};
use common::{Fixture, capture_of, clave};

const SECRETS: [&str; 6] = [
    "GOMEZA85061509H123",
    "GOMA850615MDFRRS09",
    "19.4326",
    "99.1332",
    "ana@example.com",
    "deadbeefcafe",
];

fn assert_redacted(what: &str, debug: &str) {
    for s in SECRETS {
        assert!(!debug.contains(s), "{what} Debug shows {s}: {debug}");
    }
}

fn fields() -> CardFields {
    CardFields {
        clave_elector: SECRETS[0].into(),
        curp: Some(SECRETS[1].into()),
        ocr: Some("1234567890123".into()),
        ..Default::default()
    }
}

fn location() -> Location {
    Location {
        lat: 19.4326,
        lon: -99.1332,
        accuracy_m: 8.0,
    }
}

#[test]
fn debug_output_redacts_card_fields_location_and_tokens() {
    assert_redacted("CardFields", &format!("{:?}", fields()));
    assert_redacted("Location", &format!("{:?}", location()));
    let mut capture = capture_of("p", SECRETS[0]);
    capture.fields = fields();
    capture.location = Some(location());
    assert_redacted("NewCapture", &format!("{capture:?}"));
    let manifest = Manifest {
        v: Manifest::VERSION,
        capture_id: CaptureId::new_v7(time::OffsetDateTime::UNIX_EPOCH),
        process_id: "p".into(),
        collector: apoyo_sync::Collector::MiApoyo("d".into()),
        model: capture.model.clone(),
        fields: fields(),
        location: Some(location()),
        captured_at: time::OffsetDateTime::UNIX_EPOCH,
        engine_version: "x".into(),
        formats: serde_json::from_str(
            r#"{"front":"jpeg","back":"jpeg","selfie":"jpeg","signature":"png"}"#,
        )
        .expect("formats"),
    };
    assert_redacted("Manifest", &format!("{manifest:?}"));
    let register = RegisterRequest {
        v: 1,
        device_public: [7; 32],
        email: SECRETS[4].into(),
        provider: Provider::Google,
        registration_id: CaptureId::new_v7(time::OffsetDateTime::UNIX_EPOCH),
        front_sealed_key: vec![1; 81],
        front: b"GOMEZA85061509H123".to_vec(),
    };
    assert_redacted("RegisterRequest", &format!("{register:?}"));
    let activate = ActivateRequest {
        v: 1,
        device_public: [7; 32],
        code: SECRETS[5].into(),
        nonce: vec![0; 16],
        proof: [0xde; 32],
        signing_public: None,
        auxiliar_id: None,
    };
    let debug = format!("{activate:?}");
    assert_redacted("ActivateRequest", &debug);
    assert!(!debug.contains("222, 222"), "proof bytes: {debug}");
    let answer = ActivateResponse {
        v: 1,
        token: SECRETS[5].into(),
        expires_at: time::OffsetDateTime::UNIX_EPOCH,
        receipt_key: [1; 32],
        receipt_key_id: "k".into(),
        processes: vec![],
        key_certs: vec![],
    };
    assert_redacted("ActivateResponse", &format!("{answer:?}"));
    let activation = Activation {
        url: "http://x".into(),
        token: SECRETS[5].into(),
        expires_at: time::OffsetDateTime::UNIX_EPOCH,
        receipt_public: [1; 32],
        receipt_key_id: "k".into(),
    };
    assert_redacted("Activation", &format!("{activation:?}"));
    let request = Request::new(Method::Post, "/v1/commits", Duration::from_secs(1))
        .header("Authorization", format!("Bearer {}", SECRETS[5]))
        .body(SECRETS[0].as_bytes().to_vec());
    assert_redacted("transport Request", &format!("{request:?}"));
}

#[test]
fn images_need_their_whole_signature() {
    let png = common::png(64);
    assert!(validate::check_image(PartKind::Signature, &png).is_ok());
    // The first four PNG bytes followed by anything else is not a PNG.
    let mut fake = png.clone();
    fake[4..8].copy_from_slice(b"junk");
    assert!(validate::check_image(PartKind::Signature, &fake).is_err());
    let jpeg = common::jpeg(64);
    assert!(validate::check_image(PartKind::Front, &jpeg).is_ok());
    // FF D8 FF must be followed by a marker that may follow SOI (not a stuffed 00, not EOI).
    for bad in [0x00u8, 0xd9, 0xd8, 0x01] {
        let mut fake = jpeg.clone();
        fake[3] = bad;
        assert!(
            validate::check_image(PartKind::Front, &fake).is_err(),
            "FF D8 FF {bad:02X} accepted"
        );
    }
}

#[test]
fn an_unknown_process_id_is_echoed_escaped() {
    let t = Fixture::new();
    let mut store = t.init();
    let id = "x\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let err = store
        .capture(capture_of(id, &clave(1)))
        .expect_err("unknown process");
    assert!(matches!(err, Error::UnknownProcess(_)), "{err:?}");
    let text = err.to_string();
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
    assert!(text.contains("\\u{1b}"), "{text:?}");
}

#[test]
fn a_retry_rechecks_the_duplicate_rule() {
    let t = Fixture::new();
    let mut store = t.init();
    let first = store
        .capture(capture_of("nacional", &clave(9)))
        .expect("capture");
    store
        .quarantine(&first, "card_invalid")
        .expect("quarantine");
    // Quarantined captures are outside the rule: the citizen is captured again.
    let second = store
        .capture(capture_of("nacional", &clave(9)))
        .expect("a second capture once the first is quarantined");
    let err = store
        .retry_quarantined(&first)
        .expect_err("a retry would make two live supports of one citizen");
    match err {
        Error::Duplicate { earlier, .. } => assert_eq!(earlier, second.to_string()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.info(&first).expect("info").state,
        apoyo_sync::State::Quarantined
    );
    // Another citizen's quarantined capture retries as before.
    let other = store
        .capture(capture_of("nacional", &clave(10)))
        .expect("capture");
    store
        .quarantine(&other, "card_invalid")
        .expect("quarantine");
    store.retry_quarantined(&other).expect("retry");
}
