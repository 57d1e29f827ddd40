//! Several endpoint processes on one PostgreSQL database behave as one endpoint (ADR 0019):
//! two `apoyo serve` replicas, 60 simulated devices spread over them, citizens captured on two
//! devices whose commits race through different replicas, every commit sent to both replicas
//! at once (a replay aimed at another replica), and one replica SIGKILLed mid-run. Every
//! capture is counted exactly once or answered `duplicate`, replays get byte-identical answers,
//! nothing is lost, and no lost race surfaces as an error.
//!
//! Needs PostgreSQL: ignored unless run with `--include-ignored` (CI stage `70-postgres`), and
//! then fails without `APOYO_TEST_DATABASE_URL`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use apoyo_sync::CaptureId;
use common::fleet::{Fleet, Replica, Timed};
use common::*;
use tokio::sync::Barrier;

const DEVICES: usize = 60;
/// Devices `0..SHARED` capture the same citizens as devices `SHARED..2*SHARED`.
const SHARED: usize = 20;
/// Captures of a citizen only one device captures, per device.
const OWN: usize = 2;

/// What happened to one capture.
struct Outcome {
    clave: usize,
    /// Every answer received for its commit (from either replica).
    answers: Vec<Timed>,
    /// Whether two deliveries to different replicas were in flight at the same time.
    overlapped: bool,
}

/// The citizens device `d` captures: its own, then (first) the shared one, if any.
fn claves_of(d: usize) -> Vec<usize> {
    let mut v = Vec::new();
    if d < 2 * SHARED {
        v.push(10_000 + d % SHARED);
    }
    v.extend((0..OWN).map(|k| 20_000 + d * OWN + k));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: scripts/ci/stages/70-postgres.sh runs it"]
async fn replicas_on_one_database_count_every_capture_once() {
    let server = backend::server_url()
        .expect("APOYO_TEST_DATABASE_URL must name a PostgreSQL server for this test");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let ring = apoyo_endpoint::keyring::create_dir(&keys, time::OffsetDateTime::now_utc()).unwrap();
    let ep = apoyo_endpoint::keyring::provisioned_public(&ring).unwrap();
    let database = backend::fresh_schema(&server).await;
    let blobs = dir.path().join("shared-blobs");
    let mut replicas: Vec<Replica> = (0..2)
        .map(|_| Replica::spawn(&database, &blobs, &keys))
        .collect();
    let fleet = Arc::new(Fleet::new(
        replicas.iter().map(|r| r.url.clone()).collect(),
        ep,
    ));
    let total: usize = (0..DEVICES).map(|d| claves_of(d).len()).sum();
    let answered = Arc::new(AtomicUsize::new(0));
    let barriers: Arc<Vec<Barrier>> = Arc::new((0..SHARED).map(|_| Barrier::new(2)).collect());
    let mut tasks = Vec::new();
    for d in 0..DEVICES {
        let (fleet, answered, barriers) = (fleet.clone(), answered.clone(), barriers.clone());
        tasks.push(tokio::spawn(async move {
            run_device(d, &fleet, &answered, &barriers).await
        }));
    }
    // SIGKILL replica 1 once a third of the captures are answered: requests in flight on it
    // are cut, and its devices finish through replica 0.
    while answered.load(Ordering::SeqCst) < total / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let decided_by_1 = decided(&fleet, 1).await;
    replicas[1].kill();
    let killed_at = Instant::now();
    let mut outcomes: Vec<(CaptureId, Outcome)> = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.expect("a device finished"));
    }
    check_outcomes(&outcomes, killed_at);
    check_database(&database, &blobs, &outcomes).await;
    // Lost races were retried inside the replicas, never answered as errors (checked above:
    // every answer is a receipt); replica 0 says how many it retried.
    let ready = fleet
        .try_once(0, &|u| fleet.http.get(format!("{u}/readyz")))
        .await
        .unwrap();
    let ready: serde_json::Value = serde_json::from_slice(&ready.resp.body).unwrap();
    eprintln!("replica 0 /readyz after the run: {ready}");
    // The database password never appears in what the replicas printed.
    let password = server.parse::<tokio_postgres::Config>().ok().and_then(|c| {
        c.get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    });
    for r in &replicas {
        let out = r.output.lock().unwrap();
        assert!(out.contains("database postgres://"), "{out}");
        if let Some(pw) = &password {
            assert!(!out.contains(pw.as_str()), "a replica printed the password");
        }
    }
    // Both replicas decided commits themselves (not only replayed the other's answers):
    // replica 1 counted before its kill, replica 0 by the end.
    let decided_by_0 = decided(&fleet, 0).await;
    eprintln!(
        "commits decided: replica 0 {decided_by_0}, replica 1 (before its kill) {decided_by_1}"
    );
    assert!(
        decided_by_0 > 0 && decided_by_1 > 0,
        "a replica decided no commit: {decided_by_0} / {decided_by_1}"
    );
}

/// How many commits replica `i` decided so far (its `/readyz`).
async fn decided(fleet: &Fleet, i: usize) -> u64 {
    let ready = fleet
        .try_once(i, &|u| fleet.http.get(format!("{u}/readyz")))
        .await
        .expect("/readyz answers");
    let ready: serde_json::Value = serde_json::from_slice(&ready.resp.body).expect("JSON");
    ready["commits_decided"].as_u64().expect("commits_decided")
}

/// One device: enrols through its replica, then for each capture uploads the parts through
/// one replica and sends the same signed commit to both replicas at once.
async fn run_device(
    d: usize,
    fleet: &Fleet,
    answered: &AtomicUsize,
    barriers: &[Barrier],
) -> Vec<(CaptureId, Outcome)> {
    let dev = RawDevice::new();
    let token = fleet.enrol(&dev, &format!("d{d}@example.org"), d % 2).await;
    let mut out = Vec::new();
    for (k, clave_n) in claves_of(d).into_iter().enumerate() {
        let b = dev.bundle(
            &fleet.ep,
            RawSpec::new(REVOCACION, &clave(clave_n), &dev.id()),
        );
        let parts = fleet.upload_all(&token, &b, (d + k) % 2).await;
        let body = Fleet::commit_body(&dev, &b, parts);
        if (10_000..20_000).contains(&clave_n) {
            // The two devices of this citizen commit at the same moment, through different
            // replicas (each sends to both).
            barriers[clave_n - 10_000].wait().await;
        }
        let (a, b2) = tokio::join!(
            fleet.commit_at(0, &token, &b.id, &body),
            fleet.commit_at(1, &token, &b.id, &body)
        );
        let overlapped = match (&a, &b2) {
            (Some(x), Some(y)) => x.sent < y.answered && y.sent < x.answered,
            _ => false,
        };
        let mut answers: Vec<Timed> = [a, b2].into_iter().flatten().collect();
        if answers.is_empty() {
            // Neither answered: again, through whichever replica is up.
            answers.push(fleet.commit(d % 2, &token, &b.id, &body).await);
        }
        if answers.len() == 1 && fleet.up.iter().filter(|u| u.load(Ordering::SeqCst)).count() == 1 {
            // A replay through the surviving replica too: same bytes expected.
            answers.push(fleet.commit(0, &token, &b.id, &body).await);
        }
        answered.fetch_add(1, Ordering::SeqCst);
        out.push((
            b.id,
            Outcome {
                clave: clave_n,
                answers,
                overlapped,
            },
        ));
    }
    out
}

fn check_outcomes(outcomes: &[(CaptureId, Outcome)], killed_at: Instant) {
    let mut by_replica = [0usize; 2];
    let mut counted_per_clave: HashMap<usize, usize> = HashMap::new();
    let mut overlapped = 0;
    let mut after_kill = 0;
    for (id, o) in outcomes {
        let first = &o.answers[0].resp;
        for a in &o.answers {
            assert!(
                a.resp.status == 201 || a.resp.status == 200,
                "capture {id}: answered {} (a lost race surfaced?): {:?}",
                a.resp.status,
                reason_of(&a.resp.body)
            );
            assert_eq!(
                (a.resp.status, &a.resp.body),
                (first.status, &first.body),
                "capture {id}: replicas answered different bytes"
            );
            by_replica[a.replica] += 1;
            if a.sent > killed_at {
                after_kill += 1;
            }
        }
        if first.status == 201 {
            *counted_per_clave.entry(o.clave).or_default() += 1;
        }
        overlapped += usize::from(o.overlapped);
    }
    let claves: std::collections::HashSet<usize> = outcomes.iter().map(|(_, o)| o.clave).collect();
    eprintln!(
        "captures {}, citizens {}, answers by replica {:?}, deliveries overlapping on both replicas {}, answers after the kill {}",
        outcomes.len(),
        claves.len(),
        by_replica,
        overlapped,
        after_kill
    );
    assert_eq!(outcomes.len(), DEVICES * OWN + 2 * SHARED);
    for c in &claves {
        assert_eq!(
            counted_per_clave.get(c),
            Some(&1),
            "citizen {c} counted once"
        );
    }
    assert!(
        by_replica[0] > 0 && by_replica[1] > 0,
        "both replicas committed supports"
    );
    assert!(
        overlapped > 0,
        "no two deliveries of a capture overlapped in time"
    );
    assert!(
        after_kill > 0,
        "the devices finished through the surviving replica"
    );
}

async fn check_database(
    database: &str,
    blobs: &std::path::Path,
    outcomes: &[(CaptureId, Outcome)],
) {
    let client = backend::connect(database).await;
    let rows = client
        .query("SELECT result, count(*) FROM supports GROUP BY 1", &[])
        .await
        .unwrap();
    let counts: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let citizens = DEVICES * OWN + SHARED;
    let expected: BTreeMap<String, i64> = [
        ("counted".to_string(), citizens as i64),
        ("duplicate".to_string(), SHARED as i64),
    ]
    .into();
    assert_eq!(counts, expected, "supports in the database");
    // Nothing lost: every capture's row names a folder holding its five parts.
    for (id, _) in outcomes {
        let row = client
            .query_one(
                "SELECT blob_dir FROM supports WHERE capture_id = $1",
                &[&id.to_string()],
            )
            .await
            .unwrap();
        let folder: String = row.get(0);
        let parts = std::fs::read_dir(blobs.join("supports").join(&folder))
            .unwrap()
            .count();
        assert_eq!(parts, 5, "capture {id}: parts in its support folder");
    }
}
