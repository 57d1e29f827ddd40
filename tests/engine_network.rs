//! The network policy of the `Engine`, against the real endpoint over loopback: no network and
//! "Wi-Fi only" send nothing and say why; a policy change during a run stops it at the next
//! exchange; the cellular allowance is never overshot, counted by a TCP relay that sees the
//! bytes really on the wire (retries and cut uploads included).

mod engine_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apoyo_sync::testkit::sync::transport::{Request, SendFuture};
use apoyo_sync::testkit::sync::{FaultPlan, FaultyTransport, HttpTransport, TlsConfig, Transport};
use apoyo_sync::{
    EngineOptions, Event, Hold, Listener, NetworkKind, NetworkPolicy, State, StopReason, Wait,
};
use engine_support::{Recorder, SlowTransport, capture, fast, relay, start};

#[test]
fn no_network_and_wifi_only_send_nothing_and_say_why() {
    let env = start();
    let slow = SlowTransport::new(&env.url, Duration::ZERO);
    let e = env.activated(
        "phone",
        EngineOptions {
            transport: Some(slow.clone()),
            ..fast()
        },
    );
    e.capture(capture("revocacion-2022", 1, 10)).unwrap();
    let rec = Arc::new(Recorder::default());
    e.set_listener(Some(rec.clone() as Arc<dyn Listener>));
    let before = slow.requests.load(Ordering::SeqCst);

    e.set_network(NetworkKind::None);
    let r = e.sync(None).unwrap();
    assert_eq!(r.stopped, StopReason::Held(Hold::NoNetwork));
    assert_eq!(r.pending, 1);
    assert!(rec.events().contains(&Event::SyncWaiting(Wait::NoNetwork)));

    e.set_network(NetworkKind::Cellular);
    e.set_network_policy(NetworkPolicy {
        wifi_only: true,
        cellular_allowance_bytes: None,
    });
    let r = e.sync(None).unwrap();
    assert_eq!(r.stopped, StopReason::Held(Hold::WifiOnly));
    assert!(rec.events().contains(&Event::SyncWaiting(Wait::WifiOnly)));
    e.set_network(NetworkKind::Metered);
    assert_eq!(
        e.sync(None).unwrap().stopped,
        StopReason::Held(Hold::WifiOnly)
    );
    assert_eq!(
        slow.requests.load(Ordering::SeqCst),
        before,
        "nothing was sent"
    );
    assert_eq!(
        e.capture_info(&e.captures().unwrap()[0].id)
            .unwrap()
            .attempts,
        0
    );

    e.set_network(NetworkKind::Wifi);
    let r = e.sync(None).unwrap();
    assert_eq!((r.committed, r.stopped), (1, StopReason::Drained), "{r:?}");
}

#[test]
fn leaving_wifi_during_a_run_stops_it_at_the_next_exchange() {
    let env = start();
    let slow = SlowTransport::new(&env.url, Duration::from_millis(100));
    let e = Arc::new(env.activated(
        "phone",
        EngineOptions {
            transport: Some(slow.clone()),
            ..fast()
        },
    ));
    e.set_network_policy(NetworkPolicy {
        wifi_only: true,
        cellular_allowance_bytes: None,
    });
    for i in 0..4 {
        e.capture(capture("revocacion-2022", 10 + i, 10)).unwrap();
    }
    let rec = Arc::new(Recorder::default());
    e.set_listener(Some(rec.clone() as Arc<dyn Listener>));
    let runner = {
        let e = e.clone();
        std::thread::spawn(move || e.sync(Some(Duration::from_secs(60))))
    };
    while !rec
        .events()
        .iter()
        .any(|ev| matches!(ev, Event::Capture(c) if c.state == State::Purged))
    {
        assert!(!runner.is_finished());
        std::thread::sleep(Duration::from_millis(5));
    }
    e.set_network(NetworkKind::Cellular);
    let r = runner.join().unwrap().unwrap();
    assert_eq!(r.stopped, StopReason::Held(Hold::WifiOnly), "{r:?}");
    assert!(r.committed >= 1 && r.pending >= 1, "{r:?}");
    let sent = slow.requests.load(Ordering::SeqCst);
    assert!(e.sync(None).is_ok());
    assert_eq!(
        slow.requests.load(Ordering::SeqCst),
        sent,
        "held: nothing more sent"
    );
    for c in e.captures().unwrap() {
        if c.state != State::Purged {
            assert_eq!(
                c.attempts, 0,
                "a held exchange is not a failed attempt: {c:?}"
            );
        }
    }
}

/// The allowance covers a few captures; the run stops before the exchange that would go
/// over, and the relay (the real wire) saw no more than the allowance. Runs on a lossy link
/// (cut uploads, dropped requests, lost answers) so retries are part of the count.
#[test]
fn the_cellular_allowance_is_never_overshot_retries_included() {
    let env = start();
    let wire = relay(&env.url);
    let link = Arc::new(Switchable {
        clean: HttpTransport::new(&wire.url, &TlsConfig::default()).unwrap(),
        lossy: FaultyTransport::new(
            HttpTransport::new(&wire.url, &TlsConfig::default()).unwrap(),
            FaultPlan::lossy(),
            11,
        ),
        faults: AtomicBool::new(false),
    });
    let e = env.activated_at(
        "phone",
        &wire.url,
        EngineOptions {
            transport: Some(link.clone()),
            ..fast()
        },
    );
    link.faults.store(true, Ordering::SeqCst);
    for i in 0..6 {
        e.capture(capture("revocacion-2022", 40 + i, 60)).unwrap();
    }
    let rec = Arc::new(Recorder::default());
    e.set_listener(Some(rec.clone() as Arc<dyn Listener>));
    e.set_network(NetworkKind::Cellular);
    let allowance = 200 * 1024;
    e.set_network_policy(NetworkPolicy {
        wifi_only: false,
        cellular_allowance_bytes: Some(allowance),
    });
    let on_wire_before = wire.bytes.load(Ordering::SeqCst);
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    let on_wire = wire.bytes.load(Ordering::SeqCst) - on_wire_before;
    let counted = e.network_usage().metered_bytes;
    assert_eq!(
        r.stopped,
        StopReason::Held(Hold::CellularCapReached),
        "{r:?}"
    );
    assert!(
        rec.events()
            .contains(&Event::SyncWaiting(Wait::CellularCapReached))
    );
    assert!(
        on_wire <= allowance,
        "{on_wire} bytes on the wire > {allowance}"
    );
    assert!(counted <= allowance, "{counted} counted > {allowance}");
    assert!(
        on_wire <= counted,
        "the count ({counted}) is below the wire ({on_wire})"
    );
    // The allowance was used, not wasted: the unused rest is less than one exchange's room.
    assert!(allowance - counted < 80 * 1024, "{counted} of {allowance}");
    eprintln!(
        "RATIO wire/allowance {:.3} counted/allowance {:.3} (committed {} pending {} retries {})",
        on_wire as f64 / allowance as f64,
        counted as f64 / allowance as f64,
        r.committed,
        r.pending,
        r.retries
    );
    // Nothing was lost: a new allowance (or Wi-Fi) lets the rest go.
    e.set_network(NetworkKind::Wifi);
    let mut left = r.pending;
    for _ in 0..20 {
        let r = e.sync(Some(Duration::from_secs(30))).unwrap();
        left = r.pending;
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0);
    assert!(link.lossy.stats.requests.load(Ordering::SeqCst) > 0);
    assert_eq!(env.stats()["counted"], 6, "{}", env.stats());
}

/// A clean link for registration and activation, then a lossy one (cut uploads, dropped
/// requests, lost answers) once `faults` is set.
struct Switchable {
    clean: HttpTransport,
    lossy: FaultyTransport<HttpTransport>,
    faults: AtomicBool,
}

impl Transport for Switchable {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        if self.faults.load(Ordering::SeqCst) {
            self.lossy.send(req, limit)
        } else {
            self.clean.send(req, limit)
        }
    }
}

/// Review of ADR 0022: with a capture's five parts in flight at once, each request's reserved
/// answer room made an allowance with room left look spent, and the run retried in a loop
/// that burned the allowance without a PATCH. Under an allowance the exchanges go one at a
/// time, as before: one small capture with room to spare is delivered in one run.
#[test]
fn an_allowance_with_room_left_delivers_without_retries() {
    let env = start();
    let e = env.activated("phone", fast());
    e.capture(capture("revocacion-2022", 90, 12)).unwrap();
    e.set_network(NetworkKind::Cellular);
    e.set_network_policy(NetworkPolicy {
        wifi_only: false,
        cellular_allowance_bytes: Some(250_000),
    });
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert_eq!((r.committed, r.retries), (1, 0), "{r:?}");
    assert_eq!(r.stopped, StopReason::Drained, "{r:?}");
    assert!(e.network_usage().metered_bytes <= 250_000);
}
