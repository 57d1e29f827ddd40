//! Benchmark (ADR 0019): supports counted per second by the SQLite endpoint and by 1, 2 and 4
//! `apoyo serve` replicas on one PostgreSQL database, in the same run, with the same captures
//! (sealed once, to one key folder all of them use). Each configuration enrols the same devices,
//! uploads every part (untimed), then commits every capture from 32 concurrent clients spread
//! over the replicas (timed). Prints supports/s and the ratio to SQLite.
//!
//! Run by `scripts/bench-replicas.sh` (starts PostgreSQL); ignored in the test run. Size with
//! `APOYO_BENCH_DEVICES` (default 40) and `APOYO_BENCH_CAPTURES` per device (default 5).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fleet::{Fleet, Replica};
use common::*;
use tokio::sync::Semaphore;

const CLIENTS: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A device and its sealed captures (the same bytes for every configuration).
struct Sim {
    dev: RawDevice,
    bundles: Vec<Bundle>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: scripts/bench-replicas.sh runs it"]
async fn supports_per_second_sqlite_vs_replicas() {
    let server = backend::server_url().expect("APOYO_TEST_DATABASE_URL names a PostgreSQL server");
    let (devices, per) = (
        env_usize("APOYO_BENCH_DEVICES", 40),
        env_usize("APOYO_BENCH_CAPTURES", 5),
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let ring = apoyo_endpoint::keyring::create_dir(&keys, time::OffsetDateTime::now_utc()).unwrap();
    let ep = apoyo_endpoint::keyring::provisioned_public(&ring).unwrap();
    let sims: Arc<Vec<Sim>> = Arc::new(
        (0..devices)
            .map(|d| {
                let dev = RawDevice::new();
                let bundles = (0..per)
                    .map(|k| {
                        dev.bundle(
                            &ep,
                            RawSpec::new(REVOCACION, &clave(d * per + k), &dev.id()),
                        )
                    })
                    .collect();
                Sim { dev, bundles }
            })
            .collect(),
    );
    let mut results: Vec<(String, f64, Duration)> = Vec::new();
    let configs: [(&str, usize); 4] = [
        ("sqlite", 1),
        ("postgres", 1),
        ("postgres", 2),
        ("postgres", 4),
    ];
    for (i, (backend_name, n)) in configs.into_iter().enumerate() {
        let blobs = dir.path().join(format!("blobs-{i}"));
        let database = if backend_name == "sqlite" {
            dir.path().join("bench.db").display().to_string()
        } else {
            backend::fresh_schema(&server).await
        };
        let replicas: Vec<Replica> = (0..n)
            .map(|_| Replica::spawn(&database, &blobs, &keys))
            .collect();
        let fleet = Arc::new(Fleet::new(
            replicas.iter().map(|r| r.url.clone()).collect(),
            ep,
        ));
        let (rate, took) = run(&fleet, &sims).await;
        let label = format!("{backend_name} x{n}");
        eprintln!(
            "{label}: {} supports in {took:?}: {rate:.1}/s",
            devices * per
        );
        results.push((label, rate, took));
        drop(replicas);
    }
    let base = results[0].1;
    println!(
        "\nsupports counted per second ({} captures, {CLIENTS} concurrent clients)",
        devices * per
    );
    println!(
        "{:<14} {:>10} {:>10} {:>9}",
        "endpoint", "supports/s", "commit s", "vs sqlite"
    );
    for (label, rate, took) in &results {
        println!(
            "{label:<14} {rate:>10.1} {:>10.2} {:>8.2}x",
            took.as_secs_f64(),
            rate / base
        );
    }
}

/// Enrols every device and uploads every part (untimed), then commits every capture with
/// [`CLIENTS`] at once (timed); supports per second and the commit phase's duration.
async fn run(fleet: &Arc<Fleet>, sims: &Arc<Vec<Sim>>) -> (f64, Duration) {
    let n = fleet.urls.len();
    let mut prepared = Vec::new();
    let gate = Arc::new(Semaphore::new(CLIENTS));
    let mut tasks = Vec::new();
    for d in 0..sims.len() {
        let (fleet, sims, gate) = (fleet.clone(), sims.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let sim = &sims[d];
            let token = fleet
                .enrol(&sim.dev, &format!("b{d}@example.org"), d % n)
                .await;
            let mut bodies = Vec::new();
            for (k, b) in sim.bundles.iter().enumerate() {
                let parts = fleet.upload_all(&token, b, (d + k) % n).await;
                bodies.push((b.id, Fleet::commit_body(&sim.dev, b, parts)));
            }
            (token, bodies)
        }));
    }
    for t in tasks {
        prepared.push(t.await.unwrap());
    }
    let started = Instant::now();
    let mut commits = Vec::new();
    let mut i = 0usize;
    for (token, bodies) in prepared {
        for (id, body) in bodies {
            let (fleet, gate, token) = (fleet.clone(), gate.clone(), token.clone());
            let at = i % n;
            i += 1;
            commits.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                fleet.commit(at, &token, &id, &body).await.resp.status
            }));
        }
    }
    let total = commits.len();
    for c in commits {
        assert_eq!(c.await.unwrap(), 201, "every capture counted");
    }
    let took = started.elapsed();
    (total as f64 / took.as_secs_f64(), took)
}
