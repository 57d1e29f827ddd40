//! Endpoint behaviours docs/protocol.md left open until v1.1 (issue 11, spec gap 11): an
//! expired code is not an activation failure, and the development mailbox compares addresses
//! case-insensitively.

mod common;

use apoyo_sync::ManualClock;
use apoyo_sync::protocol::{self, Reason};
use common::*;
use time::OffsetDateTime;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_not_counted_as_an_activation_failure() {
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    let dev = RawDevice::new();
    assert_eq!(register(&h, &dev, "late@example.org").await.status, 201);
    let code = h.mailbox_code("late@example.org").await;
    clock.advance(time::Duration::hours(24));
    // Well past the 5-failure limit: every answer is still "expired", never "rate limited".
    for _ in 0..8 {
        activate(&h, &dev, &code)
            .await
            .refused(410, Reason::ActivationCodeExpired);
    }
    // And a new code works at once.
    assert_eq!(register(&h, &dev, "late@example.org").await.status, 201);
    let fresh = h.mailbox_code("late@example.org").await;
    assert_eq!(activate(&h, &dev, &fresh).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailbox_compares_addresses_case_insensitively() {
    let h = Harness::start().await;
    let dev = RawDevice::new();
    assert_eq!(
        register(&h, &dev, "Ana.Lopez@Example.ORG").await.status,
        201
    );
    let lower = h.mailbox("ana.lopez@example.org").await;
    let mixed = h.mailbox("ANA.LOPEZ@example.org").await;
    assert_eq!(lower, mixed);
    assert_eq!(lower["email"], "ana.lopez@example.org");
    let code = lower["code"].as_str().unwrap().to_string();
    assert_eq!(activate(&h, &dev, &code).await.status, 200);
    // Registering again under another spelling of the address replaces the mailed code.
    assert_eq!(
        register(&h, &dev, "ana.lopez@example.org").await.status,
        201
    );
    assert_ne!(h.mailbox_code("Ana.Lopez@Example.ORG").await, code);
}
