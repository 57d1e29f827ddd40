//! The app-facing `Engine` against the real reference endpoint over loopback: the whole app
//! flow with its events, refusals, retry of a quarantined capture, close, the pinned error
//! codes, and the threading an app relies on (cancel, status and capture during a sync).

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::{
    Engine, EngineOptions, Error, ErrorCode, Event, Hold, Listener, State, StopReason, Wait,
};
use engine_support::{Recorder, SlowTransport, capture, fast, start};

/// Every `ErrorCode` keeps its number: bindings (C, Java, Swift) rely on them. A new code is
/// appended here with a new number; an existing line never changes.
#[test]
fn every_error_code_keeps_its_number() {
    fn pinned(c: ErrorCode) -> i32 {
        match c {
            ErrorCode::Invalid => 1,
            ErrorCode::ModelNotAccepted => 2,
            ErrorCode::CredentialExpired => 3,
            ErrorCode::OutOfScope => 4,
            ErrorCode::UnknownProcess => 5,
            ErrorCode::ProcessClosed => 6,
            ErrorCode::InvalidProcess => 7,
            ErrorCode::Duplicate => 8,
            ErrorCode::StorageFull => 9,
            ErrorCode::UnknownCapture => 10,
            ErrorCode::CaptureGone => 11,
            ErrorCode::KeyUnavailable => 20,
            ErrorCode::WrongDevice => 21,
            ErrorCode::Integrity => 22,
            ErrorCode::CiphertextVersion => 23,
            ErrorCode::NoStore => 30,
            ErrorCode::StoreExists => 31,
            ErrorCode::StoreBusy => 32,
            ErrorCode::CorruptStore => 33,
            ErrorCode::StoreVersion => 34,
            ErrorCode::KeyringInsideStore => 35,
            ErrorCode::Decode => 40,
            ErrorCode::TooLarge => 41,
            ErrorCode::NotRegistered => 42,
            ErrorCode::NotActivated => 43,
            ErrorCode::Activation => 44,
            ErrorCode::Transient => 45,
            ErrorCode::Rejected => 46,
            ErrorCode::BadReceipt => 47,
            ErrorCode::EngineClosed => 48,
            ErrorCode::SyncRunning => 49,
            ErrorCode::Sqlite => 90,
            ErrorCode::Io => 91,
            ErrorCode::Crypto => 92,
            ErrorCode::Internal => 99,
        }
    }
    // `ALL` lists every code once, each with its pinned number, and `from_i32` finds exactly
    // those numbers.
    let mut seen = std::collections::BTreeSet::new();
    for c in ErrorCode::ALL {
        assert_eq!(c as i32, pinned(c), "{c:?} was renumbered");
        assert!(seen.insert(c as i32), "{c:?} listed twice");
        assert_eq!(ErrorCode::from_i32(c as i32), Some(c));
    }
    let found = (-1000..1000)
        .filter(|n| ErrorCode::from_i32(*n).is_some())
        .count();
    assert_eq!(found, ErrorCode::ALL.len());
    let names: std::collections::BTreeSet<_> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names.len(), ErrorCode::ALL.len(), "names are distinct");
}

fn captures_of(events: &[Event], id: apoyo_sync::CaptureId) -> Vec<State> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Capture(c) if c.id == id => Some(c.state),
            _ => None,
        })
        .collect()
}

#[test]
fn an_app_captures_syncs_and_keeps_the_receipt_with_events_along_the_way() {
    let env = start();
    let rec = Arc::new(Recorder::default());
    let e = env.engine("phone", fast());
    e.set_listener(Some(rec.clone() as Arc<dyn Listener>));
    let st = e.status().unwrap();
    assert!(!st.registered && st.activated_until.is_none() && !st.syncing);

    // Before activation a sync sends nothing and says why it waits.
    let r = e.sync(None).unwrap();
    assert!(matches!(r.stopped, StopReason::NeedsActivation), "{r:?}");
    assert!(
        rec.events()
            .contains(&Event::SyncWaiting(Wait::NeedsActivation))
    );

    e.register(
        &env.url,
        "phone@example.org",
        apoyo_sync::Provider::Google,
        &engine_support::jpeg(3000),
    )
    .unwrap();
    assert!(e.status().unwrap().registered);
    let a = e.activate(&env.mailbox_code("phone@example.org")).unwrap();
    assert!(a.processes >= 1);
    assert_eq!(e.status().unwrap().activated_until, Some(a.expires_at));
    assert!(
        e.processes()
            .unwrap()
            .iter()
            .any(|p| p.id == "revocacion-2022")
    );

    let id = e.capture(capture("revocacion-2022", 1, 40)).unwrap();
    assert_eq!(e.status().unwrap().queue.captured, 1);
    assert_eq!(e.captures().unwrap()[0].id, id);

    let r = e.sync(Some(Duration::from_secs(30))).unwrap();
    assert_eq!((r.committed, r.pending), (1, 0), "{r:?}");
    assert_eq!(r.stopped, StopReason::Drained);
    assert_eq!(
        captures_of(&rec.events(), id),
        [
            State::Captured,
            State::Uploading,
            State::Committed,
            State::Purged
        ]
    );
    let ev = rec.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::SyncFinished(f) if f.committed == 1))
    );
    assert!(
        !rec.progress.lock().unwrap().is_empty(),
        "progress was reported"
    );
    let receipts = e.receipts().unwrap();
    assert_eq!(receipts.len(), 1);
    assert!(receipts[0].verified && receipts[0].capture_id == id);
    assert_eq!(env.stats()["counted"], 1, "{}", env.stats());
    let st = e.status().unwrap();
    assert_eq!((st.queue.purged, st.queue.pending_bytes), (1, 0));

    // Close: every later call says so; closing twice is harmless.
    e.close();
    e.close();
    assert!(matches!(e.status(), Err(Error::EngineClosed)));
    assert!(matches!(e.captures(), Err(Error::EngineClosed)));
    assert!(matches!(e.sync(None), Err(Error::EngineClosed)));
    assert!(matches!(
        e.capture(capture("revocacion-2022", 2, 10)),
        Err(Error::EngineClosed)
    ));
    // The store was released: it opens again, with its history.
    let again = Engine::open(
        &env.store_dir("phone"),
        &env.guard("phone"),
        env.provisioning(),
        fast(),
    )
    .unwrap();
    assert_eq!(again.receipts().unwrap().len(), 1);
}

#[test]
fn opening_refusals_are_typed_and_a_second_engine_is_refused_while_one_is_open() {
    let env = start();
    let e = env.engine("phone", fast());
    let busy = Engine::open(
        &env.store_dir("phone"),
        &env.guard("phone"),
        env.provisioning(),
        fast(),
    );
    assert!(matches!(busy, Err(Error::StoreBusy)), "{busy:?}");
    e.close();
    let other = Engine::open(
        &env.store_dir("phone"),
        &env.guard("another-phone"),
        env.provisioning(),
        fast(),
    );
    assert!(matches!(other, Err(Error::WrongDevice)), "{other:?}");
    let none = Engine::open(
        &env.store_dir("nothing-here"),
        &env.guard("phone"),
        env.provisioning(),
        fast(),
    );
    assert!(matches!(none, Err(Error::NoStore(_))));
    let again = Engine::init(
        &env.store_dir("phone"),
        &env.guard("phone"),
        env.provisioning(),
        fast(),
    );
    assert!(matches!(again, Err(Error::StoreExists(_))));
    let e = env.engine("fresh", fast());
    assert!(matches!(
        e.activate("ABCDEFGHIJ"),
        Err(Error::NotRegistered)
    ));
    assert!(matches!(
        e.add_processes_json(b"not json"),
        Err(Error::InvalidProcess(_))
    ));
    let unknown = "0193a3c4-0000-7000-8000-000000000000".parse().unwrap();
    assert!(matches!(e.retry(&unknown), Err(Error::UnknownCapture(_))));
}

#[test]
fn a_rejected_capture_is_quarantined_with_its_reason_and_can_be_retried() {
    let env = start();
    let rec = Arc::new(Recorder::default());
    let e = env.activated("phone", fast());
    e.set_listener(Some(rec.clone() as Arc<dyn Listener>));
    // A process the device knows but the endpoint does not: the commit is refused for good.
    e.add_processes_json(
        br#"[{"id": "solo-local", "name": "Not at the endpoint", "accepted_models": ["G"],
              "vigencia_cutoff": "2022-01-01", "scope": "national"}]"#,
    )
    .unwrap();
    let id = e.capture(capture("solo-local", 3, 10)).unwrap();
    let r = e.sync(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(r.quarantined, 1, "{r:?}");
    let info = e.capture_info(&id).unwrap();
    assert_eq!(info.state, State::Quarantined);
    let quarantined = rec.events().into_iter().find_map(|ev| match ev {
        Event::Capture(c) if c.id == id && c.state == State::Quarantined => c.reason,
        _ => None,
    });
    assert_eq!(
        quarantined, info.reason,
        "the event names the stored reason"
    );
    assert!(quarantined.is_some());

    e.retry(&id).unwrap();
    assert_eq!(e.capture_info(&id).unwrap().state, State::Captured);
    assert_eq!(
        captures_of(&rec.events(), id).last(),
        Some(&State::Captured)
    );
    // Only quarantined captures can be retried.
    assert!(e.retry(&id).is_err());
}

/// A sync on one thread; cancel, status, a capture and a second sync from others.
#[test]
fn cancel_status_and_capture_work_from_other_threads_during_a_sync() {
    let env = start();
    let slow = SlowTransport::new(&env.url, Duration::from_millis(150));
    let opts = EngineOptions {
        transport: Some(slow.clone()),
        ..fast()
    };
    let e = Arc::new(env.activated("phone", opts));
    for i in 0..4 {
        e.capture(capture("revocacion-2022", 10 + i, 10)).unwrap();
    }
    let rec = Arc::new(Recorder::default());
    e.set_listener(Some(rec.clone() as Arc<dyn Listener>));
    let runner = {
        let e = e.clone();
        std::thread::spawn(move || e.sync(Some(Duration::from_secs(60))))
    };
    // Wait until the first capture is counted: the run is mid-queue.
    while !rec
        .events()
        .iter()
        .any(|ev| matches!(ev, Event::Capture(c) if c.state == State::Purged))
    {
        assert!(
            !runner.is_finished(),
            "the run ended before anything was sent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Status answers while the run holds the store.
    let st = e.status().unwrap();
    assert!(st.syncing);
    assert!(matches!(e.sync(None), Err(Error::SyncRunning)));
    // A capture gets the store at the run's next exchange boundary; the run goes on after it.
    let late = e.capture(capture("revocacion-2022", 20, 10)).unwrap();
    assert!(e.status().unwrap().syncing, "the run resumed");
    e.cancel();
    let r = runner.join().unwrap().unwrap();
    assert_eq!(r.stopped, StopReason::Held(Hold::Cancelled), "{r:?}");
    assert!(r.pending >= 1, "{r:?}");
    // A cancelled exchange is not the endpoint's fault: no capture was charged an attempt.
    for c in e.captures().unwrap() {
        if c.state != State::Purged {
            assert_eq!(c.attempts, 0, "{c:?}");
        }
    }
    assert!(!e.status().unwrap().syncing);
    // Cancel does not stick: the next run drains everything, the late capture included.
    let r = e.sync(Some(Duration::from_secs(60))).unwrap();
    assert_eq!((r.pending, r.stopped), (0, StopReason::Drained), "{r:?}");
    assert_eq!(e.capture_info(&late).unwrap().state, State::Purged);
    assert_eq!(env.stats()["counted"], 5, "{}", env.stats());
}

#[test]
fn close_from_another_thread_stops_a_running_sync() {
    let env = start();
    let slow = SlowTransport::new(&env.url, Duration::from_millis(150));
    let e = Arc::new(env.activated(
        "phone",
        EngineOptions {
            transport: Some(slow),
            ..fast()
        },
    ));
    for i in 0..3 {
        e.capture(capture("revocacion-2022", 30 + i, 10)).unwrap();
    }
    let runner = {
        let e = e.clone();
        std::thread::spawn(move || e.sync(Some(Duration::from_secs(60))))
    };
    while !e.status().map(|s| s.syncing).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(5));
    }
    e.close();
    let r = runner.join().unwrap().unwrap();
    assert_eq!(r.stopped, StopReason::Held(Hold::Cancelled));
    assert!(matches!(e.status(), Err(Error::EngineClosed)));
    // Nothing captured is lost: the store reopens with every unsent capture.
    let again = Engine::open(
        &env.store_dir("phone"),
        &env.guard("phone"),
        env.provisioning(),
        fast(),
    )
    .unwrap();
    let left = again.captures().unwrap();
    assert_eq!(
        left.iter().filter(|c| c.state != State::Purged).count() as u64,
        r.pending
    );
}

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
}
