//! Registration ("Registro ciudadano"), the development mailbox, activation with its refusals
//! and rate limit, and the process catalog.

mod common;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::crypto::SecretKey;
use apoyo_sync::wire::{self as protocol, ActivateResponse, ProcessList, Reason, RegisterResponse};
use apoyo_sync::{CaptureId, PartKind};
use common::*;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ALPHABET: &str = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";

fn manual() -> (ManualClock, OffsetDateTime) {
    let t = OffsetDateTime::now_utc();
    (ManualClock::new(t), t)
}

async fn register(h: &Harness, dev: &RawDevice, email: &str) -> Answer {
    h.post_cbor(
        "/v1/devices",
        protocol::encode(&dev.register_request(&h.endpoint_public(), email)).unwrap(),
    )
    .await
}

async fn activate(h: &Harness, dev: &RawDevice, code: &str) -> Answer {
    h.post_cbor(
        "/v1/devices/activate",
        protocol::encode(&dev.activate_request(&h.endpoint_public(), code)).unwrap(),
    )
    .await
}

fn token_of(a: &Answer) -> ActivateResponse {
    assert_eq!(a.status, 200, "{:?}", a.error());
    protocol::decode(&a.body, 1 << 22, "activation").unwrap()
}

/// Whether a token is accepted (an upload can be created with it).
async fn token_works(h: &Harness, token: &str) -> bool {
    let id = CaptureId::new_v7(OffsetDateTime::now_utc());
    let a = h.create_upload(token, &id, PartKind::Front, 10).await;
    assert!(a.status == 201 || a.status == 401, "{}", a.status);
    a.status == 201
}

fn wrong_code(code: &str) -> String {
    let first = if code.starts_with('2') { '3' } else { '2' };
    format!("{first}{}", &code[1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_mails_a_code_valid_24_hours() {
    let (clock, t0) = manual();
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    let dev = RawDevice::new();
    let req = dev.register_request(&h.endpoint_public(), "ana@example.org");
    let a = h
        .post_cbor("/v1/devices", protocol::encode(&req).unwrap())
        .await;
    assert_eq!(a.status, 201, "{:?}", a.error());
    assert_eq!(a.header("content-type"), Some(protocol::CBOR));
    let resp: RegisterResponse = protocol::decode(&a.body, 1 << 16, "registration").unwrap();
    assert_eq!(resp.registration_id, req.registration_id);
    let expected = OffsetDateTime::from_unix_timestamp(t0.unix_timestamp()).unwrap()
        + time::Duration::hours(24);
    assert_eq!(resp.code_expires_at, expected);
    let mail = h.mailbox("ana@example.org").await;
    assert_eq!(mail["email"], "ana@example.org");
    let code = mail["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), protocol::limits::ACTIVATION_CODE_LEN);
    assert!(code.chars().all(|c| ALPHABET.contains(c)), "{code}");
    assert_eq!(
        OffsetDateTime::parse(mail["expires_at"].as_str().unwrap(), &Rfc3339).unwrap(),
        expected
    );
    assert!(
        h.get_json("/v1/dev/mailbox/nobody@example.org")
            .await
            .is_none()
    );
    // Registering again mails a new code; the mailbox shows the latest; both work.
    clock.advance(time::Duration::hours(1));
    assert_eq!(register(&h, &dev, "ana@example.org").await.status, 201);
    let second = h.mailbox_code("ana@example.org").await;
    assert_ne!(second, code);
    let r1 = token_of(&activate(&h, &dev, &code).await);
    let r2 = token_of(&activate(&h, &dev, &second).await);
    assert_eq!(r1.expires_at, expected);
    assert_eq!(r2.expires_at, expected + time::Duration::hours(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_bad_email_front_or_key() {
    let h = Harness::start().await;
    let ep = h.endpoint_public();
    let dev = RawDevice::new();
    let send = |req: protocol::RegisterRequest| {
        let h = &h;
        async move {
            h.post_cbor("/v1/devices", protocol::encode(&req).unwrap())
                .await
        }
    };
    for email in [
        "no-at-sign",
        "two@@example.org",
        "a b@example.org",
        "@example.org",
    ] {
        send(dev.register_request(&ep, email))
            .await
            .refused(422, Reason::RegistrationInvalid);
    }
    send(dev.register_request(&ep, &format!("{}@example.org", "x".repeat(250))))
        .await
        .refused(422, Reason::RegistrationInvalid);
    // The front sealed under another registration id.
    let mut req = dev.register_request(&ep, "a@example.org");
    req.registration_id = CaptureId::new_v7(OffsetDateTime::now_utc());
    send(req).await.refused(422, Reason::RegistrationInvalid);
    // Sealed by another device key than the one presented.
    let mut req = dev.register_request(&ep, "a@example.org");
    req.device_public = RawDevice::new().identity.public();
    send(req).await.refused(422, Reason::RegistrationInvalid);
    // Sealed to another endpoint.
    let other = apoyo_sync::wire::crypto::EndpointSecretKey::generate()
        .unwrap()
        .public();
    send(dev.register_request(&other, "a@example.org"))
        .await
        .refused(422, Reason::RegistrationInvalid);
    // Tampered ciphertext.
    let mut req = dev.register_request(&ep, "a@example.org");
    let n = req.front.len();
    req.front[n / 2] ^= 1;
    send(req).await.refused(422, Reason::RegistrationInvalid);
    // Not an image; empty; an image over the 2 MiB card limit.
    send(dev.register_request_with(&ep, "a@example.org", b"%PDF-1.4 not a card"))
        .await
        .refused(422, Reason::RegistrationInvalid);
    send(dev.register_request_with(&ep, "a@example.org", b""))
        .await
        .refused(422, Reason::RegistrationInvalid);
    let mut huge = image("front.jpg");
    huge.resize(2 * 1024 * 1024 + 1, 0);
    send(dev.register_request_with(&ep, "a@example.org", &huge))
        .await
        .refused(422, Reason::RegistrationInvalid);
    // A low-order device key cannot register.
    let mut req = dev.register_request(&ep, "a@example.org");
    req.device_public = [0u8; 32];
    send(req).await.refused(422, Reason::RegistrationInvalid);
    // Another protocol version.
    let mut req = dev.register_request(&ep, "a@example.org");
    req.v = 2;
    send(req).await.refused(400, Reason::Malformed);
    // Nothing of the above was mailed.
    assert!(h.get_json("/v1/dev/mailbox/a@example.org").await.is_none());
    // A registration id already used by another device key is a conflict.
    let req = dev.register_request(&ep, "a@example.org");
    assert_eq!(send(req.clone()).await.status, 201);
    let thief = RawDevice::new();
    let stolen = thief.register_request_as(
        &ep,
        "t@example.org",
        &image("front.jpg"),
        req.registration_id,
    );
    send(stolen).await.refused(409, Reason::IdempotencyConflict);
    // The same device sending its registration again gets a fresh code.
    let before = h.mailbox_code("a@example.org").await;
    assert_eq!(send(req).await.status, 201);
    assert_ne!(h.mailbox_code("a@example.org").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_refusals_reuse_and_expiry() {
    let (clock, _) = manual();
    let mut o = Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    };
    o.processes.push(processes(
        r#"{"id":"cerrado","name":"Closed","accepted_models":["G"],"vigencia_cutoff":"2020-01-01","scope":"national",
            "opens":"2020-01-01T00:00:00Z","closes":"2020-02-01T00:00:00Z"}"#,
    )[0].clone());
    let h = Harness::start_with(o).await;
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let code = h.mailbox_code("a@example.org").await;

    activate(&h, &a, &wrong_code(&code))
        .await
        .refused(403, Reason::ActivationCodeWrong);
    let b = RawDevice::new();
    assert_eq!(register(&h, &b, "b@example.org").await.status, 201);
    activate(&h, &b, &code)
        .await
        .refused(403, Reason::ActivationCodeForeignDevice);
    // A proof that does not verify: flipped, or made for another code than the one sent.
    let mut req = a.activate_request(&h.endpoint_public(), &code);
    req.proof[0] ^= 1;
    h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await
        .refused(403, Reason::ActivationProofInvalid);
    let mut req = a.activate_request(&h.endpoint_public(), &wrong_code(&code));
    req.code = code.clone();
    h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await
        .refused(403, Reason::ActivationProofInvalid);
    // B presenting A's key with B's proof.
    let mut req = b.activate_request(&h.endpoint_public(), &code);
    req.device_public = a.identity.public();
    h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await
        .refused(403, Reason::ActivationProofInvalid);

    // The right code works, and again (another process) with a new token, same expiry.
    let first = token_of(&activate(&h, &a, &code).await);
    let second = token_of(&activate(&h, &a, &code).await);
    assert_ne!(first.token, second.token);
    assert_eq!(first.token.len(), 64);
    assert_eq!(first.expires_at, second.expires_at);
    assert_eq!(first.receipt_key, h.receipt_public);
    let open: Vec<&str> = first.processes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(open, vec![REVOCACION, CONSULTA], "only the open processes");
    assert!(token_works(&h, &first.token).await && token_works(&h, &second.token).await);
    assert!(!token_works(&h, &first.token.to_uppercase()).await);

    // One second before the 24 hours end it still works; at the end it is expired.
    let left = first.expires_at - clock_now(&clock);
    clock.advance(left - time::Duration::seconds(1));
    assert!(token_works(&h, &first.token).await);
    assert_eq!(activate(&h, &a, &code).await.status, 200);
    clock.advance(time::Duration::seconds(1));
    activate(&h, &a, &code)
        .await
        .refused(410, Reason::ActivationCodeExpired);
    assert!(!token_works(&h, &first.token).await);
    // Registering again gives a new code that works.
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let fresh = h.mailbox_code("a@example.org").await;
    assert!(token_works(&h, &token_of(&activate(&h, &a, &fresh).await).token).await);
}

fn clock_now(c: &ManualClock) -> OffsetDateTime {
    use apoyo_sync::Clock;
    c.now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_found_a_day_later() {
    // The brief's case: the code is used 24 h + 1 s after registration.
    let (clock, _) = manual();
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let code = h.mailbox_code("a@example.org").await;
    clock.advance(time::Duration::hours(24) + time::Duration::seconds(1));
    activate(&h, &a, &code)
        .await
        .refused(410, Reason::ActivationCodeExpired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_failure_is_rate_limited_with_retry_after() {
    let (clock, _) = manual();
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let code = h.mailbox_code("a@example.org").await;
    let b = RawDevice::new();
    assert_eq!(register(&h, &b, "b@example.org").await.status, 201);
    let code_b = h.mailbox_code("b@example.org").await;

    for i in 0..5 {
        // Wrong and foreign codes both count.
        let c = if i % 2 == 0 {
            wrong_code(&code)
        } else {
            code_b.clone()
        };
        let r = activate(&h, &a, &c).await;
        assert_eq!(r.status, 403, "attempt {i}");
        clock.advance(time::Duration::seconds(10));
    }
    // The 6th attempt, even with the right code: 429 until the oldest failure is 15 min old.
    let r = activate(&h, &a, &code).await;
    r.refused(429, Reason::RateLimited);
    assert_eq!(
        r.header("retry-after"),
        Some((15 * 60 - 50).to_string().as_str())
    );
    clock.advance(time::Duration::minutes(10));
    let r = activate(&h, &a, &code).await;
    r.refused(429, Reason::RateLimited);
    assert_eq!(
        r.header("retry-after"),
        Some((5 * 60 - 50).to_string().as_str())
    );
    // Other devices are not affected.
    assert_eq!(activate(&h, &b, &code_b).await.status, 200);
    // Once the oldest failure left the window, one more attempt is allowed.
    clock.advance(time::Duration::seconds(5 * 60 - 50));
    assert_eq!(activate(&h, &a, &code).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proofs_do_not_lock_a_device_out() {
    let h = Harness::start().await;
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let code = h.mailbox_code("a@example.org").await;
    // Someone without A's private key sends garbage with A's public key, many times.
    for _ in 0..10 {
        let mut req = a.activate_request(&h.endpoint_public(), &code);
        req.proof = [7u8; 32];
        h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
            .await
            .refused(403, Reason::ActivationProofInvalid);
    }
    assert_eq!(activate(&h, &a, &code).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_order_device_key_cannot_activate() {
    let h = Harness::start().await;
    let zero = [0u8; 32];
    let nonce = [1u8; 16];
    // With a low-order key the shared secret is all zeros, which anyone can compute.
    let signing = [9u8; 32];
    let proof = protocol::activation_proof_v11(
        &SecretKey::zero(),
        "ABCDEFGHJK",
        &nonce,
        &zero,
        &signing,
        None,
    )
    .unwrap();
    let req = protocol::ActivateRequest {
        v: 1,
        device_public: zero,
        code: "ABCDEFGHJK".into(),
        nonce: nonce.to_vec(),
        proof,
        signing_public: Some(signing),
        auxiliar_id: None,
    };
    h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await
        .refused(403, Reason::ActivationProofInvalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_every_configured_process() {
    let mut o = Opts::default();
    o.processes.push(processes(
        r#"{"id":"futuro","name":"Future","accepted_models":["H"],"vigencia_cutoff":"2030-01-01","scope":{"entidades":[1]},
            "opens":"2099-01-01T00:00:00Z"}"#,
    )[0].clone());
    let expected = o.processes.clone();
    let h = Harness::start_with(o).await;
    let a = h.send(h.req(reqwest::Method::GET, "/v1/processes")).await;
    assert_eq!(
        (a.status, a.header("content-type")),
        (200, Some(protocol::CBOR))
    );
    let list: ProcessList =
        protocol::decode(&a.body, protocol::limits::MAX_CATALOG_BYTES, "catalog").unwrap();
    assert_eq!((list.v, list.processes), (1, expected));
    // Activation lists only the open ones.
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let code = h.mailbox_code("a@example.org").await;
    let open: Vec<String> = token_of(&activate(&h, &a, &code).await)
        .processes
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(open, vec![REVOCACION.to_string(), CONSULTA.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_activation_is_refused_and_a_fresh_nonce_works() {
    let (clock, _) = manual();
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "a@example.org").await.status, 201);
    let code = h.mailbox_code("a@example.org").await;
    let signed = protocol::encode(&a.activate_request(&h.endpoint_public(), &code)).unwrap();
    let first = token_of(&h.post_cbor("/v1/devices/activate", signed.clone()).await);
    // The same bytes again (a captured request replayed): no second token.
    h.post_cbor("/v1/devices/activate", signed.clone())
        .await
        .refused(403, Reason::ActivationProofInvalid);
    // Replays are not failures of the device: five of them do not rate-limit it.
    for _ in 0..5 {
        h.post_cbor("/v1/devices/activate", signed.clone())
            .await
            .refused(403, Reason::ActivationProofInvalid);
    }
    // The device itself signs a fresh nonce for each attempt and is served.
    let second = token_of(&activate(&h, &a, &code).await);
    assert_ne!(first.token, second.token);
    assert!(token_works(&h, &first.token).await && token_works(&h, &second.token).await);
    // A nonce is remembered while its code is valid, and forgotten after: the code has expired
    // by then, so the replay still gets no token.
    clock.advance(time::Duration::hours(24));
    h.post_cbor("/v1/devices/activate", signed)
        .await
        .refused(410, Reason::ActivationCodeExpired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_rate_limited_per_email_and_per_device_key() {
    let (clock, _) = manual();
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    // One address, five different devices, one every minute: the sixth is refused until the
    // first leaves the hour, even written in another case.
    for i in 0..5 {
        let a = register(&h, &RawDevice::new(), "ana@example.org").await;
        assert_eq!(a.status, 201, "registration {i}: {:?}", a.error());
        clock.advance(time::Duration::minutes(1));
    }
    let code_before = h.mailbox_code("ana@example.org").await;
    let r = register(&h, &RawDevice::new(), "ANA@example.org").await;
    r.refused(429, Reason::RateLimited);
    assert_eq!(
        r.header("retry-after"),
        Some((60 * 60 - 5 * 60).to_string().as_str())
    );
    assert_eq!(
        h.mailbox_code("ana@example.org").await,
        code_before,
        "a refused registration mails nothing"
    );
    // One device key, five different addresses: the same limit.
    let dev = RawDevice::new();
    for i in 0..5 {
        let a = register(&h, &dev, &format!("d{i}@example.org")).await;
        assert_eq!(a.status, 201, "registration {i}: {:?}", a.error());
    }
    register(&h, &dev, "d5@example.org")
        .await
        .refused(429, Reason::RateLimited);
    // Others are not affected.
    assert_eq!(
        register(&h, &RawDevice::new(), "otra@example.org")
            .await
            .status,
        201
    );
    // Once the oldest registration of the address is an hour old, one more is allowed.
    clock.advance(time::Duration::minutes(55));
    assert_eq!(
        register(&h, &RawDevice::new(), "ana@example.org")
            .await
            .status,
        201
    );
    // The database keeps no address in the rate-limit table.
    let subjects: Vec<Vec<u8>> = h
        .query("SELECT subject FROM registration_attempts", None)
        .await
        .iter()
        .map(|r| r[0].bytes())
        .collect();
    assert!(!subjects.is_empty());
    for s in subjects {
        assert_eq!(s.len(), 32);
        assert!(!s.windows(3).any(|w| w == b"ana"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_development_mode_no_address_or_code_is_kept() {
    let h = Harness::start_with(Opts {
        dev: false,
        ..Default::default()
    })
    .await;
    let a = RawDevice::new();
    assert_eq!(register(&h, &a, "ana@example.org").await.status, 201);
    let kept = h.query("SELECT count(*) FROM dev_mailbox", None).await[0][0].int();
    assert_eq!(kept, Some(0), "the development mailbox kept an address");
    let contents =
        common::backend::raw_contents(h.database.as_deref(), &db_path(h.dir.path())).await;
    assert!(!contents.is_empty());
    // As bytes, and as PostgreSQL's hex text of a bytea.
    let hexed = hex::encode(b"ana@example.org").into_bytes();
    for bytes in contents {
        assert!(!bytes.windows(15).any(|w| w == b"ana@example.org"));
        assert!(!bytes.windows(hexed.len()).any(|w| w == hexed));
    }
}
