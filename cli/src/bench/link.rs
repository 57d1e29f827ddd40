//! Link figures through the field kit's fault proxy (`apoyo fieldtest`'s machinery: in-process
//! endpoint, one proxy link per device, device threads syncing until drained). Wire bytes are
//! counted at the proxy's sockets (both directions), never by the client; payload bytes are the
//! parts the endpoint holds for the supports it decided.
//!
//! - `wire_bytes_per_payload_cut_{100k,256k,1m}`: every connection reset after that many bytes
//!   device → endpoint;
//! - `goodput_vs_link_{edge,3g,2g_rural}`: payload goodput until drained over the profile's
//!   uplink rate. Slow by nature (the 2G profile moves 2.25 kB/s): the sizes are small and
//!   the figure says how many captures of what size were sent;
//! - `acked_bytes_min_per_30s_run_2g_rural`: the fewest part bytes the endpoint acknowledged
//!   in one of several back-to-back 30-second sync runs through the 2G rural profile (every
//!   run must move the offset).

use std::sync::Arc;
use std::time::Duration;

use apoyo_fieldkit::fieldtest;
use apoyo_fieldkit::profile::{self, Profile};
use apoyo_fieldkit::proxy::{self, FaultLog, ProxyConfig};
use apoyo_sync::testkit::sync::{self, HttpTransport, SyncOptions, TlsConfig};

use super::fixture::{Rig, capture_plan, fail, fast_backoff, field_config, open};
use super::{Ctx, Figures, Goal, ratio};
use crate::CliResult;

fn field_run(
    ctx: &Ctx,
    profile: Profile,
    captures: usize,
    bytes: usize,
    deadline: Duration,
) -> CliResult<fieldtest::Report> {
    let work = ctx.scratch("link")?;
    let cfg = field_config(work.path(), profile, 1, captures, bytes, deadline);
    let out = fieldtest::run(&cfg, &mut |_: &fieldtest::Snapshot| {})
        .map_err(|e| fail("field run", e))?;
    Ok(out.report)
}

/// `wire_bytes_per_payload_cut_*`.
pub fn wire_bytes(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let (captures, bytes) = ctx.pick((6, 1_000_000), (2, 300_000));
    let deadline = Duration::from_secs(ctx.pick(600, 60));
    for (cut, name) in [
        (100_000u64, "100k"),
        (256 * 1024, "256k"),
        (1_000_000, "1m"),
    ] {
        let mut p = Profile::passthrough(&format!("cut-{name}"), "bench: reset after N bytes up");
        p.reset_up_after = Some(cut);
        let r = field_run(ctx, p, captures, bytes, deadline)?;
        let goal = if name == "256k" {
            Goal::AtMost(1.05)
        } else {
            Goal::None
        };
        figs.put(
            &format!("wire_bytes_per_payload_cut_{name}"),
            ratio(r.wire_bytes as f64, r.payload_bytes as f64),
            (r.wire_bytes as f64, r.payload_bytes as f64),
            "bytes",
            goal,
            &format!(
                "wire bytes at the proxy / payload bytes, every connection reset after {cut} bytes up; {} captures of ≈{bytes} B, drained: {}",
                r.captured, r.drained
            ),
        );
    }
    Ok(())
}

/// `goodput_vs_link_*`.
pub fn goodput(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let plans: [(&str, &str, usize, usize, u64); 3] = [
        ("edge", "edge", 3, ctx.pick(100_000, 4096), 300),
        ("3g", "3g", 3, ctx.pick(300_000, 4096), 300),
        (
            "2g-rural",
            "2g_rural",
            ctx.pick(2, 1),
            ctx.pick(30_000, 4096),
            300,
        ),
    ];
    for (name, key, captures, bytes, secs) in plans {
        let p = profile::by_name(name).ok_or_else(|| fail("profile", name))?;
        let deadline = Duration::from_secs(ctx.pick(secs, 8));
        let r = field_run(ctx, p, captures, bytes, deadline)?;
        figs.put(
            &format!("goodput_vs_link_{key}"),
            r.goodput_ratio.unwrap_or(0.0),
            (r.goodput_kbps, r.link_kbps.unwrap_or(0.0)),
            "kbit/s",
            Goal::AtLeast(0.85),
            &format!(
                "payload goodput until drained / the '{name}' profile's uplink rate; {} captures of ≈{bytes} B, {:.1} s, drained: {}",
                r.captured, r.drain_seconds, r.drained
            ),
        );
    }
    Ok(())
}

/// Part bytes the endpoint acknowledged so far, as the device recorded them.
fn acked(db: &std::path::Path) -> CliResult<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| fail("acked", e))?;
    let n: i64 = conn
        .query_row(
            "SELECT coalesce(sum(uploaded_bytes), 0) FROM parts",
            [],
            |r| r.get(0),
        )
        .map_err(|e| fail("acked", e))?;
    Ok(n as u64)
}

/// `acked_bytes_min_per_30s_run_2g_rural`.
pub fn rural_runs(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let work = ctx.scratch("rural")?;
    let rig = Rig::new(work.path(), 1, 1, ctx.pick(300_000, 60_000))?;
    let d = &rig.devices[0];
    let mut store = open(d)?;
    capture_plan(&mut store, d, 0..usize::MAX, |_, _, _| Ok(()))?;
    let cfg = ProxyConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        upstream: rig.ep.addr,
        profile: profile::by_name("2g-rural").ok_or_else(|| fail("profile", "2g-rural"))?,
        seed: 16,
        http_mode: false,
        link: 0,
    };
    let px = rig
        .rt
        .block_on(proxy::start(cfg, Arc::new(FaultLog::new(None))))
        .map_err(|e| fail("proxy", e))?;
    let transport = HttpTransport::new(&format!("http://{}", px.addr), &TlsConfig::default())?;
    let db = d.dir.join("store").join("apoyo.db");
    let (runs, budget) = ctx.pick((3u64, 30), (1, 12));
    let mut moved = Vec::new();
    for run in 0..runs {
        let before = acked(&db)?;
        let opts = SyncOptions {
            budget: Duration::from_secs(budget),
            backoff: fast_backoff(),
            seed: Some(run),
            progress: None,
            control: None,
        };
        let r = sync::sync_blocking(&mut store, &transport, opts)?;
        moved.push(acked(&db)?.saturating_sub(before) as f64);
        if r.pending == 0 {
            break; // nothing left to move: later runs would acknowledge nothing by design
        }
    }
    drop(store);
    rig.rt.block_on(px.shutdown());
    rig.stop();
    let min = moved.iter().copied().fold(f64::INFINITY, f64::min);
    let max = moved.iter().copied().fold(0.0, f64::max);
    figs.put(
        "acked_bytes_min_per_30s_run_2g_rural",
        min,
        (min, max),
        "bytes",
        Goal::AtLeast(1.0),
        &format!(
            "fewest (candidate) and most (baseline column) part bytes acknowledged in one of {runs} back-to-back {budget}-second sync runs through the 2g-rural profile; per run: {moved:?}"
        ),
    );
    Ok(())
}
