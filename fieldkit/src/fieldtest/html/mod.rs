//! The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched)
//! a field supervisor can read: the verdict, the summary table, a timeline per device (each
//! capture, each connection and the fault that ended it, each upload and commit attempt with
//! its outcome or fault, each commit and its receipt: `timeline`), the bytes sent over time
//! against the link rate, and the faults injected.

mod timeline;

use std::fmt::Write as _;

use super::Verdict;
use super::account::{LinkLane, Report, Timeline};
use timeline::{axis, x_of};

const WIDTH: f64 = 1040.0;
const LABEL: f64 = 150.0;

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
    let (verdict, class) = match r.verdict() {
        Verdict::LostOrCountedTwice => ("FAILED: supports lost or counted twice", "bad"),
        Verdict::Pending => (
            "Not drained at the deadline (nothing lost: pending supports are still on the phones)",
            "warn",
        ),
        Verdict::Ok => ("OK: every support counted exactly once, none lost", "ok"),
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
    h.push_str("<h2>Timeline</h2><p class=\"note\">Time runs left to right from the start of the run; hover any mark for details. Per phone, top to bottom: ▼ a capture saved on the phone and × a fault the proxy injected on its link; the connections through the link, coloured by how they ended; each attempt the phone made (blue: an upload PATCH, purple: a commit, light: creating or resuming an upload; red: the attempt failed, with the fault the phone met; orange: the endpoint refused it); ● the endpoint's decision (green counted, blue duplicate, orange rejected); then what the phone did after each attempt: ↻ retried later, ✓ signed receipt verified and kept, ⚠ quarantined.</p>");
    timeline::timeline(&mut h, t);
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

const LEGEND: &str = "<h2>Legend</h2><p class=\"legend\">Connections: \
<span><i class=\"sw\" style=\"background:#9aa5b1\"></i>connection closed normally</span>\
<span><i class=\"sw\" style=\"background:#d62728\"></i>cut (reset, link down)</span>\
<span><i class=\"sw\" style=\"background:#ff7f0e\"></i>stalled</span>\
<span><i class=\"sw\" style=\"background:#9467bd\"></i>refused</span>\
<span><i class=\"sw\" style=\"background:#e6b800\"></i>429/503 from the proxy</span>\
<span><i class=\"sw\" style=\"background:#222\"></i>blackhole</span></p>\
<p class=\"legend\">Attempts: \
<span><i class=\"sw\" style=\"background:#1f77b4\"></i>upload (PATCH)</span>\
<span><i class=\"sw\" style=\"background:#9467bd\"></i>commit</span>\
<span><i class=\"sw\" style=\"background:#9ecae1\"></i>upload created or resumed</span>\
<span><i class=\"sw\" style=\"background:#d62728\"></i>failed: no answer, 408, 429 or 5xx (hover: the fault)</span>\
<span><i class=\"sw\" style=\"background:#ff7f0e\"></i>refused by the endpoint (other 4xx)</span>\
<span>↻ retried later</span><span>✓ receipt kept</span><span>⚠ quarantined</span></p>";
