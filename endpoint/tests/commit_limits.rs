//! Issue 17, the commit path (ADR 0020), over real HTTP on loopback: a commit's reading,
//! hashing and decryption run outside the database (another device's requests, and its whole
//! commit, complete while one commit's content phase is held open by the test hook), the
//! decision re-checks the uploads it read, and refused commits are counted per device: past
//! the budget a commit gets `429 rate_limited` before any part is read, while an honest backlog
//! and replays of recorded answers are never limited.

mod common;
mod limited;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_endpoint::{Chaos, EndpointConfig, Injected, Route};
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::wire::{CommitRequest, Reason};
use common::*;
use limited::start;
use reqwest::Method;

/// Test hook: counts each device's content phases; holds the watched device's open until
/// released (never longer than a minute, so a failing test cannot hang).
#[derive(Default)]
struct Hold {
    watched: Mutex<Option<String>>,
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
    reads: Mutex<std::collections::HashMap<String, usize>>,
    held: AtomicUsize,
}

impl Hold {
    fn reads(&self, device: &str) -> usize {
        self.reads.lock().unwrap().get(device).copied().unwrap_or(0)
    }

    /// Holds the next content phase of `device`; returns (entered, release).
    fn watch(&self, device: &str) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.watched.lock().unwrap() = Some(device.to_string());
        *self.entered.lock().unwrap() = Some(entered_tx);
        *self.release.lock().unwrap() = Some(release_rx);
        (entered_rx, release_tx)
    }
}

impl Chaos for Hold {
    fn before(&self, _route: Route, _device: Option<&str>) -> Option<Injected> {
        None
    }

    fn commit_reading(&self, device_id: &str) {
        *self
            .reads
            .lock()
            .unwrap()
            .entry(device_id.into())
            .or_default() += 1;
        if self.watched.lock().unwrap().as_deref() != Some(device_id) {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = self.entered.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
        let release = self.release.lock().unwrap().take();
        if let Some(rx) = release {
            let _ = rx.recv_timeout(Duration::from_secs(60));
        }
    }
}

/// Waits (without blocking the runtime) until the held content phase has begun.
async fn entered(rx: mpsc::Receiver<()>) {
    tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the commit's content phase began");
}

const WINDOW: Duration = Duration::from_secs(600);

/// An endpoint whose commits' content phases report to (and can be held by) a [`Hold`], with a
/// budget of `refusals` refused commits per `window`, on `clock` if given.
async fn held_endpoint(
    refusals: u32,
    window: Duration,
    clock: Option<ManualClock>,
) -> (Arc<Hold>, Arc<Harness>) {
    let hold = Arc::new(Hold::default());
    let chaos: Arc<dyn Chaos> = hold.clone();
    let opts = Opts {
        chaos: Some(chaos),
        clock,
        ..Default::default()
    };
    (hold, Arc::new(start(opts, refusals, window).await))
}

/// Sends `req` as `device` from its own task and returns once its content phase is held: the
/// task and the release.
async fn commit_held(
    h: &Arc<Harness>,
    hold: &Hold,
    device: &str,
    token: &str,
    req: CommitRequest,
) -> (tokio::task::JoinHandle<Answer>, mpsc::Sender<()>) {
    let (entered_rx, release) = hold.watch(device);
    let task = {
        let (h, token) = (h.clone(), token.to_string());
        tokio::spawn(async move { h.commit(&token, &req).await })
    };
    entered(entered_rx).await;
    (task, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_complete_while_a_commit_reads_its_parts() {
    let (hold, h) = held_endpoint(20, WINDOW, None).await;
    let mut a = h.store_device("a").await;
    let mut b = h.store_device("b").await;
    let ba_id = a.capture_clave(REVOCACION, &clave(1));
    let ba = a.bundle(&ba_id);
    let bb_id = b.capture_clave(REVOCACION, &clave(2));
    let bb = b.bundle(&bb_id);
    let parts_a = h.upload_all(&a.token, &ba, 256 * 1024).await;
    let (commit_a, release) = commit_held(
        &h,
        &hold,
        a.store.device_id(),
        &a.token,
        ba.commit_request(parts_a),
    )
    .await;
    // A's content phase is held open. With it under the database lock, none of this would
    // get an answer: B's token lookup, uploads and whole commit all need the database.
    let during = tokio::time::timeout(Duration::from_secs(20), async {
        let a = h.deliver(&b.token, &bb).await;
        let status = h.send(h.req(Method::GET, "/v1/processes")).await;
        (a, status)
    })
    .await
    .expect("another device's commit completes while a content phase is in progress");
    assert_eq!(during.0.status, 201, "{:?}", during.0.error());
    assert_eq!(during.1.status, 200);
    assert!(!commit_a.is_finished());
    assert_eq!(hold.held.load(Ordering::SeqCst), 1);
    release.send(()).unwrap();
    let a_answer = commit_a.await.unwrap();
    assert_eq!(a_answer.status, 201, "{:?}", a_answer.error());
    assert_eq!(h.stats().await["counted"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_deleted_while_its_commit_reads_it_is_upload_missing() {
    let (hold, h) = held_endpoint(20, WINDOW, None).await;
    let mut a = h.store_device("a").await;
    let b_id = a.capture_clave(REVOCACION, &clave(3));
    let b = a.bundle(&b_id);
    let parts = h.upload_all(&a.token, &b, 256 * 1024).await;
    let (commit, release) = commit_held(
        &h,
        &hold,
        a.store.device_id(),
        &a.token,
        b.commit_request(parts.clone()),
    )
    .await;
    // The front, already read, is terminated by its device before the decision.
    let del = h
        .send(h.tus(Method::DELETE, &parts[0].upload, &a.token))
        .await;
    assert_eq!(del.status, 204);
    release.send(()).unwrap();
    commit.await.unwrap().refused(409, Reason::UploadMissing);
    // Nothing was recorded: uploaded again, the capture is counted.
    assert_eq!(h.stats().await["received"], 0);
    assert_eq!(h.deliver(&a.token, &b).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_decided_while_another_delivery_reads_it_is_replayed_to_that_delivery() {
    let (hold, h) = held_endpoint(1, WINDOW, None).await;
    let mut a = h.store_device("a").await;
    let b_id = a.capture_clave(REVOCACION, &clave(7));
    let b = a.bundle(&b_id);
    let parts = h.upload_all(&a.token, &b, 256 * 1024).await;
    let (first, release) = commit_held(
        &h,
        &hold,
        a.store.device_id(),
        &a.token,
        b.commit_request(parts.clone()),
    )
    .await;
    // A second delivery (the first one's answer seemed lost) is decided through another
    // replica while the first reads (in one replica it would wait for the first: gate test).
    let other = limited::another_replica(&h, 1, WINDOW).await;
    let second = h
        .commit_at(&other.url(), &a.token, &b.commit_request(parts.clone()))
        .await;
    assert_eq!(second.status, 201, "{:?}", second.error());
    release.send(()).unwrap();
    // The first finds the uploads consumed, and the answer recorded: it gets the same bytes.
    let first = first.await.unwrap();
    assert_eq!((first.status, &first.body), (201, &second.body));
    assert_eq!(h.stats().await["received"], 1);
    // Nothing was counted as a refusal: the budget of one is whole.
    let c_id = a.capture_clave(REVOCACION, &clave(8));
    let c = a.bundle(&c_id);
    let mut bad = h.upload_all(&a.token, &c, 256 * 1024).await;
    bad[2].sha256[0] ^= 1;
    h.commit(&a.token, &c.commit_request(bad.clone()))
        .await
        .refused(422, Reason::PartMismatch);
    h.commit(&a.token, &c.commit_request(bad))
        .await
        .refused(429, Reason::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_a_refused_commit_gets_429_before_any_part_is_read() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let hold = Arc::new(Hold::default());
    let chaos: Arc<dyn Chaos> = hold.clone();
    let opts = Opts {
        chaos: Some(chaos),
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let h = start(opts, 3, Duration::from_secs(60)).await;
    let mut dev = h.store_device("a").await;
    let device = dev.store.device_id().to_string();
    let b_id = dev.capture_clave(REVOCACION, &clave(4));
    let b = dev.bundle(&b_id);
    let parts = h.upload_all(&dev.token, &b, 256 * 1024).await;
    // Uploads that do not exist are refused on their rows alone: never counted.
    let mut unknown = parts.clone();
    unknown[2].upload = "/v1/uploads/0123456789abcdef0123456789abcdef".into();
    for _ in 0..5 {
        h.commit(&dev.token, &b.commit_request(unknown.clone()))
            .await
            .refused(409, Reason::UploadMissing);
    }
    let mut bad = parts.clone();
    bad[1].sha256[5] ^= 1;
    for _ in 0..3 {
        h.commit(&dev.token, &b.commit_request(bad.clone()))
            .await
            .refused(422, Reason::PartMismatch);
    }
    // The digest the endpoint kept while the uploads were written contradicts the commit:
    // refused without reading a part, and still counted.
    let reads = hold.reads(&device);
    assert_eq!(
        reads, 0,
        "a part_mismatch the kept digest shows reads no part"
    );
    let limited = h.commit(&dev.token, &b.commit_request(bad.clone())).await;
    limited.refused(429, Reason::RateLimited);
    // The clock stands still: the oldest refusal leaves the window in exactly 60 s.
    assert_eq!(limited.header("retry-after"), Some("60"));
    // The device's good commit waits too, and no part was read for either.
    h.commit(&dev.token, &b.commit_request(parts.clone()))
        .await
        .refused(429, Reason::RateLimited);
    assert_eq!(hold.reads(&device), reads);
    // Another device is not limited.
    let mut other = h.store_device("b").await;
    let ob_id = other.capture_clave(REVOCACION, &clave(5));
    let ob = other.bundle(&ob_id);
    assert_eq!(h.deliver(&other.token, &ob).await.status, 201);
    // Once the window has passed, the same good commit is counted.
    clock.advance(time::Duration::seconds(61));
    let ok = h.commit(&dev.token, &b.commit_request(parts)).await;
    assert_eq!(ok.status, 201, "{:?}", ok.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_gone_from_disk_count_as_refusals() {
    let h = start(Opts::default(), 2, WINDOW).await;
    let mut dev = h.store_device("a").await;
    let b_id = dev.capture_clave(REVOCACION, &clave(6));
    let b = dev.bundle(&b_id);
    let parts = h.upload_all(&dev.token, &b, 256 * 1024).await;
    let id = parts[3].upload.rsplit('/').next().unwrap();
    std::fs::remove_file(h.blob_dir().join("uploads").join(id)).unwrap();
    for _ in 0..2 {
        let a = h.commit(&dev.token, &b.commit_request(parts.clone())).await;
        a.refused(409, Reason::UploadMissing);
        assert!(a.error().unwrap().detail.contains("bytes are gone"));
    }
    h.commit(&dev.token, &b.commit_request(parts))
        .await
        .refused(429, Reason::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_backlog_and_replays_are_never_limited() {
    let budget = 2;
    let h = start(Opts::default(), budget, WINDOW).await;
    let mut dev = h.store_device("a").await;
    // A returning phone's backlog: more captures than the budget, each committed twice (the
    // first answer lost) and replayed once more.
    for i in 0..5 {
        let b_id = dev.capture_clave(REVOCACION, &clave(10 + i));
        let b = dev.bundle(&b_id);
        let parts = h.upload_all(&dev.token, &b, 256 * 1024).await;
        let first = h.commit(&dev.token, &b.commit_request(parts.clone())).await;
        assert_eq!(first.status, 201, "{:?}", first.error());
        for _ in 0..2 {
            let again = h.commit(&dev.token, &b.commit_request(parts.clone())).await;
            assert_eq!((again.status, &again.body), (201, &first.body));
        }
    }
    // A recorded rejection (content sealed to a seal key the endpoint does not have), replayed.
    let r_id = dev.capture_clave(REVOCACION, &clave(20));
    let r = dev.bundle(&r_id);
    let rparts = h.upload_all(&dev.token, &r, 256 * 1024).await;
    let mut rejected = r.commit_request(rparts);
    rejected.seal_key_id = "no-such-key".into();
    let first = h.commit(&dev.token, &rejected).await;
    first.refused(422, Reason::Undecryptable);
    for _ in 0..(budget + 2) {
        let again = h.commit(&dev.token, &rejected).await;
        assert_eq!((again.status, &again.body), (422, &first.body));
    }
    // The budget is still whole: `budget` refusals, then 429 — and a replay still answers.
    let b_id = dev.capture_clave(REVOCACION, &clave(21));
    let b = dev.bundle(&b_id);
    let mut bad = h.upload_all(&dev.token, &b, 256 * 1024).await;
    bad[0].length += 1;
    for _ in 0..budget {
        h.commit(&dev.token, &b.commit_request(bad.clone()))
            .await
            .refused(422, Reason::PartMismatch);
    }
    h.commit(&dev.token, &b.commit_request(bad))
        .await
        .refused(429, Reason::RateLimited);
    let again = h.commit(&dev.token, &rejected).await;
    assert_eq!((again.status, &again.body), (422, &first.body));
    assert_eq!(h.stats().await["counted"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_nothing_or_a_window_over_a_day_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = apoyo_sync::testkit::crypto::Ed25519Secret::generate().unwrap();
    let ring = apoyo_endpoint::KeyRing::generate(&root, time::OffsetDateTime::now_utc()).unwrap();
    for (refusals, window) in [
        (0, WINDOW),
        (20, Duration::ZERO),
        (20, Duration::from_secs(86_401)),
    ] {
        let mut cfg =
            EndpointConfig::new(dir.path().join("x.db"), ring.clone(), processes(PROCESSES));
        cfg.commit_refusals = refusals;
        cfg.commit_refusal_window = window;
        let err = apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
            .await
            .expect_err("an unusable budget");
        assert!(err.to_string().contains("commit_refusal"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_changed_on_disk_are_a_part_mismatch_found_by_reading_them() {
    let (hold, h) = held_endpoint(2, WINDOW, None).await;
    let mut dev = h.store_device("a").await;
    let device = dev.store.device_id().to_string();
    let b_id = dev.capture_clave(REVOCACION, &clave(7));
    let b = dev.bundle(&b_id);
    let parts = h.upload_all(&dev.token, &b, 256 * 1024).await;
    // The kept digest still matches the commit; the bytes on disk no longer do.
    let id = parts[1].upload.rsplit('/').next().unwrap();
    let path = h.blob_dir().join("uploads").join(id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    for _ in 0..2 {
        h.commit(&dev.token, &b.commit_request(parts.clone()))
            .await
            .refused(422, Reason::PartMismatch);
    }
    assert_eq!(hold.reads(&device), 2, "each commit read its parts");
    h.commit(&dev.token, &b.commit_request(parts))
        .await
        .refused(429, Reason::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_commit_sent_at_once_read_the_parts_once() {
    let (hold, h) = held_endpoint(1, WINDOW, None).await;
    let mut dev = h.store_device("a").await;
    let device = dev.store.device_id().to_string();
    let b_id = dev.capture_clave(REVOCACION, &clave(8));
    let b = dev.bundle(&b_id);
    let parts = h.upload_all(&dev.token, &b, 256 * 1024).await;
    let req = b.commit_request(parts);
    // The first copy's content phase is held open until every other copy has been sent.
    let (began, release) = hold.watch(&device);
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (h, token, req) = (h.clone(), dev.token.clone(), req.clone());
            tokio::spawn(async move { h.commit(&token, &req).await })
        })
        .collect();
    entered(began).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(()).unwrap();
    let mut bodies = Vec::new();
    for copy in copies {
        let answer = copy.await.unwrap();
        assert_eq!(answer.status, 201, "{:?}", answer.error());
        bodies.push(answer.body.clone());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer, repeated"
    );
    assert_eq!(hold.reads(&device), 1, "only the first copy read the parts");
    assert_eq!(h.stats().await["received"], 1);
}
