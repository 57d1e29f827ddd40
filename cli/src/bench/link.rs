//! Link figures through the field kit's fault proxy (`apoyo fieldtest`'s machinery: in-process
//! endpoint, one proxy link per device, device threads syncing until drained). Wire bytes are
//! counted at the proxy's sockets (both directions), never by the client; payload bytes are the
//! parts the endpoint holds for the supports it decided.
//!
//! - `wire_bytes_per_payload_cut_{100k,256k,1m}`: every connection reset after that many bytes
//!   device → endpoint;
//! - `goodput_vs_link_{edge,3g,2g_rural}`: payload goodput until drained over the profile's
//!   uplink rate. Slow by nature (the 2G profile moves 2.25 kB/s): the sizes are small and
//!   the figure says how many captures of what size were sent.

use std::time::Duration;

use apoyo_fieldkit::fieldtest;
use apoyo_fieldkit::profile::{self, Profile};

use super::fixture::{fail, field_config};
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
