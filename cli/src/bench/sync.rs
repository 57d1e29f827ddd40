//! Sync figures on loopback, against the in-process reference endpoint:
//!
//! - `capture_commit_vs_raw_fsync`: while the queue is filled, each ≈2 MB capture's commit
//!   alternates with a raw write + fdatasync of a new file of the same length + fsync of its
//!   folder; ratio of the medians;
//! - `sync_vs_durable_post`: draining the queue (`sync_until_drained`, what `apoyo sync` runs)
//!   vs plain reqwest POSTs of each capture's bytes to a trivial axum server that writes and
//!   fdatasyncs each once (one keep-alive connection, one POST at a time); ratio of MB/s;
//! - `endpoint_ingest_vs_raw_fsync`: 8 devices syncing at once vs 8 threads writing and
//!   fdatasyncing the same supports' bytes; ratio of MB/s.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use apoyo_fieldkit::fieldtest::device::{self, Live, SyncPlan};
use apoyo_fieldkit::fieldtest::marks::Recorder;
use apoyo_fieldkit::fieldtest::setup::Device;
use apoyo_sync::State;
use apoyo_sync::testkit::Store;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State as AxState};
use axum::http::StatusCode;

use super::fixture::{
    Rig, capture_plan, fail, fast_backoff, open, random_bytes, raw_durable_write,
};
use super::{Ctx, Figures, Goal, median, ratio};
use crate::CliResult;

/// Bytes the store still holds for its waiting captures.
pub fn queued_bytes(store: &Store) -> CliResult<u64> {
    Ok(store
        .list()?
        .iter()
        .filter(|c| matches!(c.state, State::Captured | State::Uploading))
        .map(|c| c.total_bytes)
        .sum())
}

/// Syncs one device until nothing is pending; returns the seconds it took.
pub fn drain(store: &mut Store, url: &str, limit: Duration) -> CliResult<f64> {
    let start = Instant::now();
    // The attempt marks go beside the store, as a field test's device keeps them.
    let marks = Recorder::open(store.dir().parent().unwrap_or(store.dir()))
        .map_err(|e| crate::CliError::Io(e.to_string()))?;
    let sp = SyncPlan {
        url: url.to_string(),
        backoff: fast_backoff(),
        seed: 16,
        deadline: start + limit,
        start,
        marks,
    };
    let live = Live::default();
    let drained = device::sync_until_drained(store, &sp, &live, &AtomicBool::new(false), |_| {})
        .map_err(|e| fail("sync", e))?;
    if !drained {
        return Err(fail("sync", "the queue did not drain in time"));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// `capture_commit_vs_raw_fsync` and `sync_vs_durable_post`.
pub fn sync_vs_post(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let work = ctx.scratch("sync")?;
    let (n, bytes) = ctx.pick((100, 2_000_000), (4, 150_000));
    let rig = Rig::new(work.path(), 1, n, bytes)?;
    let d = &rig.devices[0];
    let raw = work.path().join("raw");
    std::fs::create_dir_all(&raw).map_err(|e| fail("raw folder", e))?;
    let mut store = open(d)?;
    let (mut cap, mut wr, mut lens) = (Vec::new(), Vec::new(), Vec::new());
    capture_plan(&mut store, d, 0..usize::MAX, |_, took, len| {
        let block = random_bytes(len as usize, len);
        let t = Instant::now();
        raw_durable_write(&raw, &format!("{}", cap.len()), &block, true)?;
        wr.push(t.elapsed().as_secs_f64());
        cap.push(took.as_secs_f64());
        lens.push(len);
        Ok(())
    })?;
    let (c, w) = (median(&mut cap), median(&mut wr));
    figs.put(
        "capture_commit_vs_raw_fsync",
        ratio(c, w),
        (c * 1e3, w * 1e3),
        "ms",
        Goal::AtMost(1.25),
        "Store::capture of a ≈2 MB capture vs write+fdatasync of a new file of its part file's length + folder fsync (medians)",
    );
    let total = queued_bytes(&store)? as f64;
    let secs = drain(&mut store, &rig.ep.url, Duration::from_secs(1800))?;
    drop(store);
    let post = durable_posts(&rig, work.path(), &lens)?;
    let sync_mbs = total / 1e6 / secs;
    figs.put(
        "sync_vs_durable_post",
        ratio(sync_mbs, post),
        (sync_mbs, post),
        "MB/s",
        Goal::AtLeast(0.8),
        "apoyo sync of the queued captures to the endpoint on loopback vs one reqwest POST per capture's bytes to an axum server that writes+fdatasyncs each",
    );
    rig.stop();
    Ok(())
}

/// The baseline: POSTs of `lens` bytes each, one at a time on one keep-alive connection, to an
/// axum server that writes each body to a new file and fdatasyncs it. Returns MB/s.
fn durable_posts(rig: &Rig, work: &Path, lens: &[u64]) -> CliResult<f64> {
    let dir = work.join("posted");
    std::fs::create_dir_all(&dir).map_err(|e| fail("post folder", e))?;
    rig.rt.block_on(async {
        let app = axum::Router::new()
            .route("/blob/{n}", axum::routing::post(store_body))
            .layer(DefaultBodyLimit::disable())
            .with_state(dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| fail("post server", e))?;
        let addr = listener.local_addr().map_err(|e| fail("post server", e))?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let bodies: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, l)| random_bytes(*l as usize, i as u64))
            .collect();
        let t = Instant::now();
        for (i, b) in bodies.into_iter().enumerate() {
            let r = client
                .post(format!("http://{addr}/blob/{i}"))
                .body(b)
                .send()
                .await
                .map_err(|e| fail("post", e))?;
            if !r.status().is_success() {
                return Err(fail("post", r.status()));
            }
        }
        let secs = t.elapsed().as_secs_f64();
        server.abort();
        Ok::<f64, crate::CliError>(lens.iter().sum::<u64>() as f64 / 1e6 / secs)
    })
}

async fn store_body(
    AxState(dir): AxState<PathBuf>,
    UrlPath(n): UrlPath<u64>,
    body: axum::body::Bytes,
) -> StatusCode {
    let done =
        tokio::task::spawn_blocking(move || raw_durable_write(&dir, &n.to_string(), &body, false))
            .await;
    match done {
        Ok(Ok(())) => StatusCode::NO_CONTENT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `endpoint_ingest_vs_raw_fsync`.
pub fn ingest(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    const DEVICES: usize = 8;
    let work = ctx.scratch("ingest")?;
    let (n, bytes) = ctx.pick((12, 520_000), (1, 60_000));
    let rig = Rig::new(work.path(), DEVICES, n, bytes)?;
    let mut sizes: Vec<Vec<u64>> = Vec::new();
    for d in &rig.devices {
        let mut store = open(d)?;
        capture_plan(&mut store, d, 0..usize::MAX, |_, _, _| Ok(()))?;
        sizes.push(
            store
                .list()?
                .iter()
                .filter(|c| c.state == State::Captured)
                .map(|c| c.total_bytes)
                .collect(),
        );
    }
    let total: u64 = sizes.iter().flatten().sum();
    let t = Instant::now();
    let url = rig.ep.url.clone();
    let results: Vec<CliResult<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = rig
            .devices
            .iter()
            .map(|d: &Device| {
                let url = url.clone();
                s.spawn(move || drain(&mut open(d)?, &url, Duration::from_secs(1800)))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(fail("ingest", "a device thread panicked")))
            })
            .collect()
    });
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    let raw = raw_parallel(work.path(), &sizes)?;
    let ep = total as f64 / 1e6 / secs;
    figs.put(
        "endpoint_ingest_vs_raw_fsync",
        ratio(ep, raw),
        (ep, raw),
        "MB/s",
        Goal::AtLeast(0.5),
        "supports' bytes the endpoint took from 8 devices syncing at once vs 8 threads writing+fdatasyncing the same supports",
    );
    rig.stop();
    Ok(())
}

/// 8 threads, each writing its device's supports (one new file each) and fdatasyncing them.
fn raw_parallel(work: &Path, sizes: &[Vec<u64>]) -> CliResult<f64> {
    let dir = work.join("raw-ingest");
    std::fs::create_dir_all(&dir).map_err(|e| fail("raw folder", e))?;
    let bodies: Vec<Vec<Vec<u8>>> = sizes
        .iter()
        .map(|v| v.iter().map(|l| random_bytes(*l as usize, *l)).collect())
        .collect();
    let t = Instant::now();
    let results: Vec<CliResult> = std::thread::scope(|s| {
        let hs: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(d, b)| {
                let dir = &dir;
                s.spawn(move || {
                    for (i, body) in b.iter().enumerate() {
                        raw_durable_write(dir, &format!("{d}-{i}"), body, false)?;
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(fail("raw", "a thread panicked")))
            })
            .collect()
    });
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    Ok(sizes.iter().flatten().sum::<u64>() as f64 / 1e6 / secs)
}
