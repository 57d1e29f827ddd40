//! The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched)
//! a field supervisor can read: the verdict, the summary table, a timeline per device (each
//! capture, each connection and the fault that ended it, each commit and its receipt), the
//! bytes sent over time against the link rate, and the faults injected.

use std::fmt::Write as _;

use super::account::{DeviceLane, LinkLane, Report, Timeline};

const WIDTH: f64 = 1040.0;
const LABEL: f64 = 150.0;
const LANE: f64 = 64.0;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page.
pub fn render(r: &Report, t: &Timeline, source: &str) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let (verdict, class) = if r.lost > 0 || r.double_counted > 0 {
        ("FAILED: supports lost or counted twice", "bad")
    } else if r.pending > 0 {
        (
            "Not drained at the deadline (nothing lost: pending supports are still on the phones)",
            "warn",
        )
    } else {
        ("OK: every support counted exactly once, none lost", "ok")
    };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>apoyo fieldtest: {p}, seed {s}</title><style>{CSS}</style></head><body>\
         <h1>Field test report</h1><p class=\"verdict {class}\">{verdict}</p>\
         <p class=\"meta\">Profile <b>{p}</b>: {src}<br>Seed {s} · {d} device(s) · {l} link(s) · {k} process kill(s)<br>Replay: <code>{cmd}</code></p>",
        p = esc(&r.profile),
        s = r.seed,
        src = esc(source),
        d = r.devices,
        l = r.links,
        k = r.kills,
        cmd = esc(&r.command),
    );
    summary(&mut h, r);
    h.push_str("<h2>Timeline</h2><p class=\"note\">Time runs left to right from the start of the run. Each bar is one connection through the link, coloured by how it ended. ▼ a capture saved on the phone; ● the endpoint's decision (green counted, blue duplicate, orange rejected); ✓ under it when the phone keeps the signed receipt; × a fault injected on the device's link (hover for details).</p>");
    timeline(&mut h, t);
    h.push_str("<h2>Bytes sent over time</h2><p class=\"note\">Device → endpoint throughput per link (kbit/s, one-second steps) against the profile's uplink rate (dashed).</p>");
    for (n, l) in t.links.iter().enumerate() {
        chart(&mut h, n, l, t.link_kbps, t.span_ms);
    }
    faults(&mut h, r, t);
    h.push_str(LEGEND);
    h.push_str("</body></html>\n");
    h
}

const CSS: &str = "body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{margin:0 0 8px}h2{margin:28px 0 6px;font-size:18px}\
.verdict{font-size:18px;font-weight:bold;padding:8px 12px;border-radius:6px;display:inline-block}\
.ok{background:#d9f2d9;color:#145214}.bad{background:#f8d0d0;color:#7a1111}.warn{background:#fbecc4;color:#6b4c00}\
.meta{color:#444}.note{color:#555;font-size:13px;margin:2px 0 8px}code{font-size:12px;background:#f3f3f3;padding:1px 4px}\
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 10px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.key td{font-weight:bold}\
svg text{font:12px sans-serif}.legend span{display:inline-block;margin-right:14px}\
.sw{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}";

fn summary(h: &mut String, r: &Report) {
    let rows: Vec<(&str, String, &str, bool)> = vec![
        (
            "Captured",
            r.captured.to_string(),
            "supports saved on the phones",
            false,
        ),
        (
            "Counted",
            r.counted.to_string(),
            "counted by INE's endpoint",
            false,
        ),
        (
            "Duplicates expected / found",
            format!("{} / {}", r.duplicates_expected, r.duplicates_found),
            "the same citizen captured on two phones: counted once, the second recorded as duplicate",
            false,
        ),
        (
            "Quarantined",
            quarantine(r),
            "rejected for a reason (kept on the phone, can be retried)",
            false,
        ),
        (
            "Refused on the phone",
            r.refused_locally.to_string(),
            "invalid captures the phone refused before saving",
            false,
        ),
        (
            "Pending",
            r.pending.to_string(),
            "still on the phones, waiting for a link (not lost)",
            false,
        ),
        (
            "Lost",
            r.lost.to_string(),
            "must be 0: neither on a phone nor at the endpoint",
            true,
        ),
        (
            "Counted twice",
            r.double_counted.to_string(),
            "must be 0",
            true,
        ),
        (
            "Bytes on the wire",
            r.wire_bytes.to_string(),
            "both directions, counted at the proxy's sockets",
            false,
        ),
        (
            "Payload bytes",
            r.payload_bytes.to_string(),
            "encrypted supports the endpoint decided",
            false,
        ),
        (
            "Retries",
            r.retries.to_string(),
            "failed exchanges the phones retried",
            false,
        ),
        (
            "Time to drain",
            format!("{:.1} s", r.drain_seconds),
            "until every phone had nothing left to send",
            false,
        ),
        (
            "Goodput",
            goodput(r),
            "payload rate against the link rate",
            false,
        ),
    ];
    h.push_str("<h2>Summary</h2><table><tr><th>figure</th><th>value</th><th>meaning</th></tr>");
    for (k, v, m, key) in rows {
        let _ = write!(
            h,
            "<tr{}><td>{k}</td><td class=\"n\">{}</td><td>{m}</td></tr>",
            if key { " class=\"key\"" } else { "" },
            esc(&v)
        );
    }
    h.push_str("</table>");
}

fn quarantine(r: &Report) -> String {
    if r.quarantined_by_reason.is_empty() {
        return "0".into();
    }
    let by: Vec<String> = r
        .quarantined_by_reason
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    format!("{} ({})", r.quarantined, by.join(", "))
}

fn goodput(r: &Report) -> String {
    match (r.goodput_ratio, r.link_kbps) {
        (Some(x), Some(k)) => format!(
            "{:.1} kbit/s = {:.0} % of {} × {k} kbit/s",
            r.goodput_kbps,
            x * 100.0,
            r.links
        ),
        _ => format!("{:.1} kbit/s (link not rate-limited)", r.goodput_kbps),
    }
}

fn x_of(ms: u64, span: u64) -> f64 {
    LABEL + (ms as f64 / span.max(1) as f64) * (WIDTH - LABEL - 10.0)
}

fn color(fault: Option<&str>) -> &'static str {
    match fault {
        None => "#9aa5b1",
        Some("reset" | "link_down") => "#d62728",
        Some("stall") => "#ff7f0e",
        Some("refused") => "#9467bd",
        Some(f) if f.starts_with("status_") => "#e6b800",
        Some("blackhole") => "#222",
        Some(_) => "#8c564b",
    }
}

fn axis(h: &mut String, span: u64, y: f64) {
    let secs = (span / 1000).max(1);
    let step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|s| secs / s <= 10)
        .unwrap_or(1200);
    let mut s = 0;
    while s <= secs {
        let x = x_of(s * 1000, span);
        let _ = write!(
            h,
            "<line x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{y}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{s} s</text>",
            y + 14.0
        );
        s += step;
    }
}

fn timeline(h: &mut String, t: &Timeline) {
    let shared = t.links.len() == 1 && t.devices.len() > 1;
    let lanes = t.devices.len() + usize::from(shared);
    let height = lanes as f64 * LANE + 24.0;
    let _ = write!(
        h,
        "<svg width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"timeline\">"
    );
    axis(h, t.span_ms, lanes as f64 * LANE);
    let mut y = 0.0;
    if shared {
        let _ = write!(h, "<text x=\"4\" y=\"{}\">shared link</text>", y + 34.0);
        conns(h, &t.links[0], t.span_ms, y);
        y += LANE;
    }
    for d in &t.devices {
        device_lane(h, d, t, y, !shared);
        y += LANE;
    }
    h.push_str("</svg>");
}

fn conns(h: &mut String, l: &LinkLane, span: u64, y: f64) {
    for c in &l.conns {
        let (x1, x2) = (x_of(c.opened_ms, span), x_of(c.closed_ms, span));
        let _ = write!(
            h,
            "<rect x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\" rx=\"2\"><title>connection {} · {:.1}–{:.1} s · up {} B, down {} B · {}</title></rect>",
            y + 24.0,
            (x2 - x1).max(2.0),
            color(c.fault.as_deref()),
            c.conn,
            c.opened_ms as f64 / 1000.0,
            c.closed_ms as f64 / 1000.0,
            c.up_bytes,
            c.down_bytes,
            esc(c.fault.as_deref().unwrap_or("closed normally"))
        );
    }
}

fn device_lane(h: &mut String, d: &DeviceLane, t: &Timeline, y: f64, own_link: bool) {
    let _ = write!(
        h,
        "<text x=\"4\" y=\"{}\">device {}</text><text x=\"4\" y=\"{}\" fill=\"#777\">{} captures{}</text><line x1=\"{LABEL}\" y1=\"{:.1}\" x2=\"{WIDTH}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
        y + 28.0,
        d.index,
        y + 44.0,
        d.captures.len(),
        if d.kills > 0 {
            format!(", {} kills", d.kills)
        } else {
            String::new()
        },
        y + LANE - 2.0,
        y + LANE - 2.0,
    );
    if own_link && let Some(l) = t.links.get(d.link) {
        conns(h, l, t.span_ms, y);
        for e in t
            .faults
            .iter()
            .filter(|e| e.link == d.link as u64 && e.kind != "link_up")
        {
            let x = x_of(e.at_ms, t.span_ms);
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\" font-weight=\"bold\">×<title>{} at {:.2} s {}</title></text>",
                x - 4.0,
                y + 20.0,
                esc(&e.kind),
                e.at_ms as f64 / 1000.0,
                esc(&e.detail)
            );
        }
    }
    for c in &d.captures {
        let x = x_of(*c, t.span_ms);
        let _ = write!(
            h,
            "<path d=\"M{:.1} {:.1} l8 0 l-4 8 z\" fill=\"#1f77b4\"><title>capture saved at {:.1} s</title></path>",
            x - 4.0,
            y + 8.0,
            *c as f64 / 1000.0
        );
    }
    for (at, what, receipt) in &d.commits {
        let x = x_of(*at, t.span_ms);
        let fill = match what.as_str() {
            "counted" => "#2ca02c",
            "duplicate" => "#17becf",
            _ => "#ff7f0e",
        };
        let _ = write!(
            h,
            "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\"><title>endpoint: {} at {:.1} s{}</title></circle>",
            y + 46.0,
            esc(what),
            *at as f64 / 1000.0,
            if *receipt {
                ", signed receipt kept"
            } else {
                ""
            }
        );
        if *receipt {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#2ca02c\">✓</text>",
                x - 4.0,
                y + 62.0
            );
        }
    }
}

fn chart(h: &mut String, n: usize, l: &LinkLane, rate: Option<f64>, span: u64) {
    let mut points = Vec::new();
    let mut last = (0u64, 0u64);
    for &(ms, bytes) in &l.series {
        if ms >= last.0 + 1000 {
            let kbps = (bytes - last.1) as f64 * 8.0 / (ms - last.0) as f64;
            points.push((ms, kbps));
            last = (ms, bytes);
        }
    }
    let top = points
        .iter()
        .map(|p| p.1)
        .fold(rate.unwrap_or(1.0) * 1.25, f64::max)
        .max(1.0);
    let hgt = 150.0;
    let y_of = |k: f64| 10.0 + hgt * (1.0 - k / top);
    let _ = write!(
        h,
        "<svg width=\"{WIDTH}\" height=\"{}\" role=\"img\" aria-label=\"bytes over time\"><text x=\"4\" y=\"24\">link {n}</text><text x=\"4\" y=\"40\" fill=\"#777\">{:.0} kbit/s max</text>",
        hgt + 36.0,
        top
    );
    axis(h, span, hgt + 10.0);
    if let Some(r) = rate {
        let y = y_of(r);
        let _ = write!(
            h,
            "<line x1=\"{LABEL}\" y1=\"{y:.1}\" x2=\"{WIDTH}\" y2=\"{y:.1}\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#d62728\" text-anchor=\"end\">link {r} kbit/s</text>",
            WIDTH - 4.0,
            y - 4.0
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|(ms, k)| format!("{:.1},{:.1}", x_of(*ms, span), y_of(*k)))
        .collect();
    let _ = write!(
        h,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/></svg>",
        path.join(" ")
    );
}

fn faults(h: &mut String, r: &Report, t: &Timeline) {
    h.push_str("<h2>Faults injected</h2><table><tr><th>fault</th><th>count</th></tr>");
    if r.faults.is_empty() {
        h.push_str("<tr><td>none</td><td class=\"n\">0</td></tr>");
    }
    for (k, v) in &r.faults {
        let _ = write!(h, "<tr><td>{}</td><td class=\"n\">{v}</td></tr>", esc(k));
    }
    h.push_str("</table><details><summary>First faults, in order</summary><table><tr><th>s</th><th>link</th><th>connection</th><th>fault</th><th>detail</th></tr>");
    for e in t.faults.iter().take(300) {
        let conn = if e.conn == u64::MAX {
            "-".to_string()
        } else {
            e.conn.to_string()
        };
        let _ = write!(
            h,
            "<tr><td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td class=\"n\">{conn}</td><td>{}</td><td>{}</td></tr>",
            e.at_ms as f64 / 1000.0,
            e.link,
            esc(&e.kind),
            esc(&e.detail)
        );
    }
    h.push_str("</table></details>");
}

const LEGEND: &str = "<h2>Legend</h2><p class=\"legend\">\
<span><i class=\"sw\" style=\"background:#9aa5b1\"></i>connection closed normally</span>\
<span><i class=\"sw\" style=\"background:#d62728\"></i>cut (reset, link down)</span>\
<span><i class=\"sw\" style=\"background:#ff7f0e\"></i>stalled</span>\
<span><i class=\"sw\" style=\"background:#9467bd\"></i>refused</span>\
<span><i class=\"sw\" style=\"background:#e6b800\"></i>429/503 from the proxy</span>\
<span><i class=\"sw\" style=\"background:#222\"></i>blackhole</span></p>";
