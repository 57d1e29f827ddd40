//! Issue 17: the per-address registration limit counts an address's variants (`+tags`, case,
//! and at Gmail dots) as one mailbox, over HTTP against a real endpoint; at other domains dots
//! are significant.

mod common;

use apoyo_sync::wire::{self as protocol, Reason};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_variants_share_one_registration_budget() {
    let h = Harness::start().await;
    let variants = [
        "anamaria@gmail.com",
        "Ana.Maria@gmail.com",
        "ana.maria+a@gmail.com",
        "anamaria+b@googlemail.com",
        "a.namaria+c@GMAIL.com",
    ];
    for email in variants {
        // A new device key each time: only the address is shared.
        let dev = RawDevice::new();
        let a = h
            .post_cbor(
                "/v1/devices",
                protocol::encode(&dev.register_request(&h.endpoint_public(), email)).unwrap(),
            )
            .await;
        assert_eq!(a.status, 201, "{email}: {:?}", a.error());
    }
    let dev = RawDevice::new();
    let a = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&dev.register_request(&h.endpoint_public(), "ana.maria+f@gmail.com"))
                .unwrap(),
        )
        .await;
    a.refused(429, Reason::RateLimited);
    // Another mailbox is not affected.
    let dev = RawDevice::new();
    let a = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&dev.register_request(&h.endpoint_public(), "otra@gmail.com"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dots_count_apart_outside_gmail() {
    let h = Harness::start().await;
    let register = |email: &'static str| {
        let body =
            protocol::encode(&RawDevice::new().register_request(&h.endpoint_public(), email))
                .unwrap();
        h.post_cbor("/v1/devices", body)
    };
    for email in [
        "ana.maria@example.org",
        "Ana.Maria@example.org",
        "ana.maria+a@example.org",
        "ANA.MARIA+b@EXAMPLE.ORG",
        "ana.maria+c@example.org",
    ] {
        let a = register(email).await;
        assert_eq!(a.status, 201, "{email}: {:?}", a.error());
    }
    register("Ana.Maria+d@example.org")
        .await
        .refused(429, Reason::RateLimited);
    // Without the dot it is another mailbox at this domain, with its own budget.
    let a = register("anamaria@example.org").await;
    assert_eq!(a.status, 201, "{:?}", a.error());
}
