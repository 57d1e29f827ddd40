//! Benchmark of issue 17's measurement (ADR 0020): another device's latency while clients repeat
//! a refused commit, run by hand (ignored in the test run).

mod common;
mod limited;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use limited::start;

const WINDOW: Duration = Duration::from_secs(600);

/// Benchmark (issue 17's measurement, same run): the median latency of another device's
/// authenticated request (`HEAD` of its upload: a token lookup and a row read) with the
/// endpoint idle, then while `APOYO_BENCH_ATTACKERS` (default 6) clients repeat one commit whose
/// ≈7.5 MiB of parts are read in full before `part_mismatch` — without a budget (the content
/// phase alone) and with the default budget, and, as the floor any flood sets, while they repeat
/// a cheap `HEAD`. Prints the medians and their ratios to idle.
/// Ignored in the test run: `cargo test -p apoyo-endpoint --test commit_bench -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark, run by hand"]
async fn bench_latency_under_repeated_part_mismatch() {
    let attackers = std::env::var("APOYO_BENCH_ATTACKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6usize);
    let idle = {
        let h = Arc::new(start(Opts::default(), u32::MAX, WINDOW).await);
        let (path, token) = honest_upload(&h).await;
        median_head(&h, &path, &token).await
    };
    println!("idle: median {idle:.2} ms");
    {
        // The floor any flood sets: the same clients repeating a cheap authenticated request.
        let h = Arc::new(start(Opts::default(), u32::MAX, WINDOW).await);
        let (path, token) = honest_upload(&h).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..attackers)
            .map(|_| {
                let (h, p, t, stop) = (h.clone(), path.clone(), token.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        h.head(&t, &p).await;
                    }
                })
            })
            .collect();
        let flooded = median_head(&h, &path, &token).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "{attackers} clients repeating HEAD: median {flooded:.2} ms ({:.2}x idle)",
            flooded / idle
        );
    }
    for (label, budget) in [
        ("no budget", u32::MAX),
        ("default budget", apoyo_endpoint::DEFAULT_COMMIT_REFUSALS),
    ] {
        let h = Arc::new(start(Opts::default(), budget, WINDOW).await);
        let (path, token) = honest_upload(&h).await;
        let (bad_token, bad) = big_bad_commit(&h).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
        let tasks: Vec<_> = (0..attackers)
            .map(|_| {
                let (h, t, req) = (h.clone(), bad_token.clone(), bad.clone());
                let (stop, statuses) = (stop.clone(), statuses.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let s = h.commit(&t, &req).await.status;
                        *statuses.lock().unwrap().entry(s).or_default() += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let attacked = median_head(&h, &path, &token).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "{attackers} clients repeating a 7.5 MiB part_mismatch, {label}: median {attacked:.2} ms ({:.2}x idle); answers {:?}",
            attacked / idle,
            statuses.lock().unwrap()
        );
    }
}

/// An honest device's complete upload to `HEAD`: (path, token).
async fn honest_upload(h: &Harness) -> (String, String) {
    let mut dev = h.store_device("honest").await;
    let id = dev.capture_clave(REVOCACION, &clave(90));
    let b = dev.bundle(&id);
    let (kind, bytes) = &b.parts[0];
    let path = h.upload(&dev.token, &id, *kind, bytes, 1 << 20).await;
    (path, dev.token.clone())
}

/// A device with five parts of their largest sizes uploaded, and a commit of them whose
/// manifest digest is wrong (every part is read in full, then `part_mismatch`).
async fn big_bad_commit(h: &Harness) -> (String, apoyo_sync::wire::CommitRequest) {
    use apoyo_sync::PartKind;
    let mut dev = h.store_device("attacker").await;
    let id = dev.capture_clave(REVOCACION, &clave(91));
    let mut b = dev.bundle(&id);
    let mib = 1024 * 1024;
    for (kind, len) in [
        (PartKind::Front, 2 * mib),
        (PartKind::Back, 2 * mib),
        (PartKind::Selfie, 3 * mib),
        (PartKind::Signature, mib / 2),
    ] {
        *b.part_mut(kind) = (0..len).map(|_| fastrand::u8(..)).collect();
    }
    let mut parts = h.upload_all(&dev.token, &b, 1 << 20).await;
    parts[4].sha256[0] ^= 1;
    (dev.token.clone(), b.commit_request(parts))
}

/// The median of 200 `HEAD`s, in milliseconds.
async fn median_head(h: &Harness, path: &str, token: &str) -> f64 {
    let mut ms = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = std::time::Instant::now();
        assert_eq!(h.head(token, path).await.status, 200);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}
