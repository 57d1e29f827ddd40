//! Issue 17, registration: the per-address, per-source, per-IPv6-/48 and global budgets,
//! checked before the front is decrypted, with failed fronts counted (with a trusted forwarded
//! header behind one or more proxies, listed or in a CIDR range, and a spoofed one ignored), the
//! expiry of registrations never activated (on registration and periodically), the keyed hash
//! of activation codes (looked for in the database file and its WAL as written), and one owner
//! per registration id under concurrent registrations. A real endpoint over real HTTP on loopback; distinct sources are real client
//! sockets bound to distinct loopback addresses (127.0.0.2, 127.0.0.3, …).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use apoyo_endpoint::{RegistrationLimits, TrustedForwarding};
use apoyo_sync::CaptureId;
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::wire::{self as protocol, Reason};
use common::backend::Val;
use common::*;
use reqwest::Method;

/// An HTTP client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A registration of a new device key with a fresh address, from `http`, with an optional
/// `X-Forwarded-For`.
async fn register_from(h: &Harness, http: &reqwest::Client, forwarded: Option<&str>) -> Answer {
    let dev = RawDevice::new();
    let email = format!("c{:016x}@example.org", fastrand::u64(..));
    let body = protocol::encode(&dev.register_request(&h.endpoint_public(), &email)).unwrap();
    let mut rb = http
        .request(Method::POST, format!("{}/v1/devices", h.url))
        .header("content-type", protocol::CBOR)
        .body(body);
    if let Some(v) = forwarded {
        rb = rb.header("x-forwarded-for", v);
    }
    h.send(rb).await
}

/// A registration of a new device key for `email` with `front` (an image, or bytes that are
/// not one), from `http`.
async fn register_with(h: &Harness, http: &reqwest::Client, email: &str, front: &[u8]) -> Answer {
    let dev = RawDevice::new();
    let body =
        protocol::encode(&dev.register_request_with(&h.endpoint_public(), email, front)).unwrap();
    let rb = http
        .request(Method::POST, format!("{}/v1/devices", h.url))
        .header("content-type", protocol::CBOR)
        .body(body);
    h.send(rb).await
}

fn limited(a: &Answer) {
    a.refused(429, Reason::RateLimited);
    let wait: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
}

async fn start(limits: RegistrationLimits, clock: Option<ManualClock>) -> Harness {
    Harness::start_with(Opts {
        registration: limits,
        clock,
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_budget_is_refused_while_another_still_registers() {
    let h = start(
        RegistrationLimits {
            per_source: 3,
            ..Default::default()
        },
        None,
    )
    .await;
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    for _ in 0..3 {
        let r = register_from(&h, &a, None).await;
        assert_eq!(r.status, 201, "{:?}", r.error());
    }
    limited(&register_from(&h, &a, None).await);
    let r = register_from(&h, &b, None).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_header_counts_only_from_a_trusted_proxy() {
    let proxy = "127.0.0.2";
    let h = start(
        RegistrationLimits {
            per_source: 2,
            forwarded: Some(
                TrustedForwarding::new("x-forwarded-for", vec![proxy.parse().unwrap()]).unwrap(),
            ),
            ..Default::default()
        },
        None,
    )
    .await;
    // A direct client spoofing a new address each time is still one source.
    let direct = client_from("127.0.0.3");
    for i in 0..2 {
        let xff = format!("203.0.113.{i}");
        let r = register_from(&h, &direct, Some(&xff)).await;
        assert_eq!(r.status, 201, "{:?}", r.error());
    }
    limited(&register_from(&h, &direct, Some("203.0.113.99")).await);
    // Through the proxy, the right-most forwarded address is the source: the client's own
    // left-most entries do not matter, and another forwarded address has its own budget.
    let via = client_from(proxy);
    for spoof in ["1.1.1.1", "2.2.2.2"] {
        let xff = format!("{spoof}, 198.51.100.7");
        let r = register_from(&h, &via, Some(&xff)).await;
        assert_eq!(r.status, 201, "{:?}", r.error());
    }
    limited(&register_from(&h, &via, Some("3.3.3.3, 198.51.100.7")).await);
    let r = register_from(&h, &via, Some("198.51.100.8")).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trusted_hops_give_each_citizen_their_own_source() {
    // Load balancer 127.0.0.2 -> TLS terminator 127.0.0.3 -> endpoint; both trusted.
    let proxies: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let h = start(
        RegistrationLimits {
            per_source: 1,
            forwarded: Some(TrustedForwarding::new("x-forwarded-for", proxies).unwrap()),
            ..Default::default()
        },
        None,
    )
    .await;
    let term = client_from("127.0.0.3");
    for citizen in ["198.51.100.1", "198.51.100.2"] {
        let xff = format!("{citizen}, 127.0.0.2");
        let r = register_from(&h, &term, Some(&xff)).await;
        assert_eq!(r.status, 201, "{citizen}: {:?}", r.error());
    }
    // The first citizen again (whatever they prepend): their own budget is used.
    limited(&register_from(&h, &term, Some("9.9.9.9, 198.51.100.1, 127.0.0.2")).await);
    // An untrusted peer's header is still ignored: its own address is the source.
    let direct = client_from("127.0.0.4");
    let r = register_from(&h, &direct, Some("198.51.100.3")).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
    limited(&register_from(&h, &direct, Some("198.51.100.4")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_in_a_trusted_cidr_range_is_trusted() {
    let range: Vec<apoyo_endpoint::IpNet> = vec!["127.0.0.0/29".parse().unwrap()];
    let h = start(
        RegistrationLimits {
            per_source: 1,
            forwarded: Some(TrustedForwarding::with_ranges("x-forwarded-for", range).unwrap()),
            ..Default::default()
        },
        None,
    )
    .await;
    let via = client_from("127.0.0.5");
    for citizen in ["198.51.100.1", "198.51.100.2"] {
        let r = register_from(&h, &via, Some(citizen)).await;
        assert_eq!(r.status, 201, "{citizen}: {:?}", r.error());
    }
    limited(&register_from(&h, &via, Some("198.51.100.1")).await);
    // Outside the range: the header is ignored.
    let outside = client_from("127.0.0.9");
    let r = register_from(&h, &outside, Some("198.51.100.5")).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
    limited(&register_from(&h, &outside, Some("198.51.100.6")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_64s_of_one_ipv6_48_share_a_site_budget() {
    let proxy: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap()];
    let h = start(
        RegistrationLimits {
            per_ipv6_site: 2,
            forwarded: Some(TrustedForwarding::new("x-forwarded-for", proxy).unwrap()),
            ..Default::default()
        },
        None,
    )
    .await;
    let via = client_from("127.0.0.2");
    // Two /64s of 2001:db8:7::/48, each well within its own /64 budget...
    for xff in ["2001:db8:7:1::1", "2001:db8:7:2::1"] {
        let r = register_from(&h, &via, Some(xff)).await;
        assert_eq!(r.status, 201, "{xff}: {:?}", r.error());
    }
    // ...use the /48's: a third /64 of it is refused, another /48 is not.
    limited(&register_from(&h, &via, Some("2001:db8:7:3::1")).await);
    let r = register_from(&h, &via, Some("2001:db8:8:1::1")).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_budget_holds_across_sources() {
    let h = start(
        RegistrationLimits {
            global: 3,
            ..Default::default()
        },
        None,
    )
    .await;
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let r = register_from(&h, &client_from(ip), None).await;
        assert_eq!(r.status, 201, "{:?}", r.error());
    }
    limited(&register_from(&h, &client_from("127.0.0.5"), None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_budget_is_refused_before_its_front_is_checked() {
    let h = start(
        RegistrationLimits {
            per_address: 1,
            ..Default::default()
        },
        None,
    )
    .await;
    let http = client_from("127.0.0.2");
    let r = register_with(&h, &http, "ana@example.org", &image("front.jpg")).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
    // Over the address's budget, a front that would fail its check is never opened: the
    // refusal is the budget's (it was the front's when the budget was checked after it).
    let not_an_image = b"not an image, and never decrypted".repeat(8);
    limited(&register_with(&h, &http, "Ana+2@Example.org", &not_an_image).await);
    // Another address with the same bad front is checked, and refused for the front.
    register_with(&h, &http, "luis@example.org", &not_an_image)
        .await
        .refused(422, Reason::RegistrationInvalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fronts_that_fail_their_check_count_against_the_source() {
    let h = start(
        RegistrationLimits {
            per_source: 2,
            ..Default::default()
        },
        None,
    )
    .await;
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let not_an_image = b"not an image".repeat(8);
    for i in 0..2 {
        register_with(&h, &a, &format!("bad{i}@example.org"), &not_an_image)
            .await
            .refused(422, Reason::RegistrationInvalid);
    }
    // Two decrypts spent: the source's budget is used, even for a good front, and a bad one
    // past the budget is refused by it, before any decrypt.
    limited(&register_with(&h, &a, "good@example.org", &image("front.jpg")).await);
    limited(&register_with(&h, &a, "bad9@example.org", &not_an_image).await);
    let r = register_from(&h, &b, None).await;
    assert_eq!(r.status, 201, "{:?}", r.error());
}

/// Rows of `table` naming the device key `key` (hex).
async fn count(h: &Harness, table: &str, key: &str) -> i64 {
    let sql = if h.database.is_some() {
        format!("SELECT count(*) FROM {table} WHERE encode(device_public, 'hex') = ?1")
    } else {
        format!("SELECT count(*) FROM {table} WHERE hex(device_public) = upper(?1)")
    };
    h.query(&sql, Some(key)).await[0][0].int().unwrap()
}

/// `(registration rows, code rows, device rows)` of a device key.
async fn rows_of(h: &Harness, dev: &RawDevice) -> (i64, i64, i64) {
    let key = hex::encode(dev.identity.public());
    (
        count(h, "registrations", &key).await,
        count(h, "activation_codes", &key).await,
        count(h, "devices", &key).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unactivated_registration_is_removed_after_its_ttl_and_an_activated_one_stays() {
    let t0 = time::OffsetDateTime::now_utc();
    let clock = ManualClock::new(t0);
    let h = start(
        RegistrationLimits {
            unactivated_ttl: Duration::from_secs(3600),
            ..Default::default()
        },
        Some(clock.clone()),
    )
    .await;
    let (kept, _token) = h.raw_device("activated").await;
    let idle = RawDevice::new();
    let r = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&idle.register_request(&h.endpoint_public(), "idle@example.org"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.error());
    assert_eq!(rows_of(&h, &idle).await, (1, 1, 1));
    // Past the TTL but while its code is valid: kept (a sweep runs on each registration).
    clock.advance(time::Duration::hours(23));
    h.raw_device("later").await;
    assert_eq!(rows_of(&h, &idle).await, (1, 1, 1));
    // Past the TTL and the code's 24 hours: the next registration's sweep removes it whole.
    clock.advance(time::Duration::hours(2));
    h.raw_device("after").await;
    assert_eq!(rows_of(&h, &idle).await, (0, 0, 0), "not swept");
    assert_eq!(
        rows_of(&h, &kept).await,
        (1, 1, 1),
        "an activated one was swept"
    );
    // The swept device may register again.
    let r = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&idle.register_request(&h.endpoint_public(), "idle@example.org"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unactivated_registration_is_swept_when_no_one_registers() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let h = start(
        RegistrationLimits {
            unactivated_ttl: Duration::from_secs(3600),
            sweep_every: Duration::from_secs(1),
            ..Default::default()
        },
        Some(clock.clone()),
    )
    .await;
    let idle = RawDevice::new();
    let r = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&idle.register_request(&h.endpoint_public(), "idle@example.org"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.error());
    // Sweeps run, but its code is valid: kept.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rows_of(&h, &idle).await, (1, 1, 1));
    // Past the TTL and the code's 24 hours, with no registration arriving: a periodic sweep
    // removes it (within a few ticks).
    clock.advance(time::Duration::hours(25));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while rows_of(&h, &idle).await != (0, 0, 0) {
        assert!(std::time::Instant::now() < deadline, "not swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many times `needle` occurs in `hay`.
fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_no_activation_code_in_clear() {
    let h = Harness::start().await;
    let dev = RawDevice::new();
    let email = "ana@example.org";
    let r = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&dev.register_request(&h.endpoint_public(), email)).unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.error());
    // The development mailbox is the developer's inbox (the one place a code may be in clear).
    let code = h.mailbox_code(email).await;
    let hexed = hex::encode(code.as_bytes()).into_bytes();
    if h.database.is_none() {
        // First the files as written, before any VACUUM or checkpoint: a clear code written
        // anywhere, even in a row deleted since, is still in the WAL or a free page. The only
        // copies allowed are the mailbox row's (the code right after its address).
        let mailbox_row = [email.as_bytes(), code.as_bytes()].concat();
        let contents = common::backend::raw_contents(None, &db_path(h.dir.path())).await;
        assert!(!contents[1].is_empty(), "no WAL to look through");
        for (file, bytes) in contents.iter().enumerate() {
            let clear = occurrences(bytes, code.as_bytes());
            let in_mailbox = occurrences(bytes, &mailbox_row);
            assert_eq!(
                clear, in_mailbox,
                "a clear code outside the mailbox in file {file}"
            );
            assert_eq!(occurrences(bytes, &hexed), 0, "a hex code in file {file}");
        }
    }
    // Then, the mailbox emptied, everything the database holds.
    h.query("DELETE FROM dev_mailbox", None).await;
    if h.database.is_none() {
        let conn = rusqlite::Connection::open(db_path(h.dir.path())).unwrap();
        conn.execute_batch("VACUUM").unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let contents =
        common::backend::raw_contents(h.database.as_deref(), &db_path(h.dir.path())).await;
    for bytes in &contents {
        assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()));
        assert!(!bytes.windows(hexed.len()).any(|w| w == hexed));
    }
    let stored = h
        .query("SELECT code_hmac FROM activation_codes", None)
        .await;
    assert_eq!(stored.len(), 1);
    let Val::Bytes(digest) = &stored[0][0] else {
        panic!("not bytes: {stored:?}");
    };
    // Keyed: not the code's plain SHA-256 either.
    assert_eq!(digest.len(), 32);
    assert_ne!(
        digest[..],
        apoyo_sync::testkit::crypto::sha256(code.as_bytes())
    );
    // The code still works (compared case-insensitively, by its keyed hash).
    let a = h
        .post_cbor(
            "/v1/devices/activate",
            protocol::encode(&dev.activate_request(&h.endpoint_public(), &code.to_lowercase()))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_id_have_one_owner() {
    let h = Harness::start().await;
    let id = CaptureId::new_v7(time::OffsetDateTime::now_utc());
    let devs: Vec<RawDevice> = (0..6).map(|_| RawDevice::new()).collect();
    let answers = futures_util::future::join_all(devs.iter().enumerate().map(|(i, d)| {
        let email = format!("racer{i}@example.org");
        let body = protocol::encode(&d.register_request_as(
            &h.endpoint_public(),
            &email,
            &image("front.jpg"),
            id,
        ))
        .unwrap();
        h.post_cbor("/v1/devices", body)
    }))
    .await;
    let won: Vec<usize> = (0..devs.len())
        .filter(|&i| answers[i].status == 201)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for (i, a) in answers.iter().enumerate() {
        if i != won[0] {
            a.refused(409, Reason::IdempotencyConflict);
        }
    }
    // Every code of that registration was issued to its owner.
    for (i, d) in devs.iter().enumerate() {
        let (_, codes, _) = rows_of(&h, d).await;
        assert_eq!(codes, i64::from(i == won[0]), "device {i}");
    }
}
