//! `peak_rss_mb_1000_queued` (and `_100_queued`): the peak resident set of a device process
//! (`apoyo bench-sync-child`, its own process so nothing of the bench counts) that opens a
//! store holding N queued captures and syncs it until drained to the in-process endpoint on
//! loopback. The child reads its own high-water mark (`VmHWM`, /proc/self/status) at the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use apoyo_fieldkit::fieldtest::device;

use super::fixture::{Rig, capture_plan, fail, open};
use super::{Ctx, Figures, Goal, ratio};
use crate::CliResult;

#[derive(clap::Args)]
pub struct ChildArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    url: String,
}

/// `apoyo bench-sync-child` (test support): drains the store, prints `peak_kb <VmHWM>`.
pub fn child(a: ChildArgs) -> CliResult {
    let mut store = device::open_store(&a.dir).map_err(|e| fail("child", e))?;
    super::sync::drain(&mut store, &a.url, Duration::from_secs(1800))?;
    drop(store);
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| fail("child", e))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| fail("child", "no VmHWM in /proc/self/status"))?;
    println!("peak_kb {kb}");
    Ok(())
}

/// Peak RSS in MB of a child draining `n` queued captures.
fn peak_for(ctx: &Ctx, n: usize, bytes: usize) -> CliResult<f64> {
    let work = ctx.scratch("rss")?;
    let rig = Rig::new(work.path(), 1, n, bytes)?;
    let d = &rig.devices[0];
    let mut store = open(d)?;
    capture_plan(&mut store, d, 0..usize::MAX, |_, _, _| Ok(()))?;
    drop(store);
    let out = Command::new(&ctx.exe)
        .arg("bench-sync-child")
        .arg("--dir")
        .arg(&d.dir)
        .args(["--url", &rig.ep.url])
        .output()
        .map_err(|e| fail("child", e))?;
    rig.stop();
    if !out.status.success() {
        return Err(fail(
            "child",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let kb = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("peak_kb ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .ok_or_else(|| fail("child", "no peak_kb line"))?;
    Ok(kb / 1024.0)
}

/// `peak_rss_mb_1000_queued`, `peak_rss_mb_100_queued` and their ratio.
pub fn peak_rss(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let bytes = ctx.pick(100_000, 4096);
    let (big, small) = ctx.pick((1000, 100), (20, 2));
    let b = peak_for(ctx, big, bytes)?;
    let s = peak_for(ctx, small, bytes)?;
    let what = |n: usize| {
        format!(
            "peak RSS (VmHWM) of a process syncing {n} queued captures of ≈{bytes} B until drained"
        )
    };
    figs.put(
        "peak_rss_mb_1000_queued",
        b,
        (b, 16.0),
        "MB",
        Goal::AtMost(16.0),
        &what(big),
    );
    figs.put(
        "peak_rss_mb_100_queued",
        s,
        (s, 16.0),
        "MB",
        Goal::AtMost(16.0),
        &what(small),
    );
    figs.put(
        "peak_rss_1000_vs_100",
        ratio(b, s),
        (b, s),
        "MB",
        Goal::AtMost(1.1),
        "peak RSS with 1000 queued / with 100",
    );
    Ok(())
}
