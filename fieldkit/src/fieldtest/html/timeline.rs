//! The report's timeline: one lane per device (each capture, each connection through its link
//! and the fault that ended it, each upload or commit attempt with its outcome or fault, each
//! decision of the endpoint, and the engine's decision after each attempt: retried, receipt
//! kept, quarantined), and the time axis the bytes-over-time charts share.

use std::fmt::Write as _;

use super::{LABEL, WIDTH, esc};
use crate::fieldtest::account::{DeviceLane, LinkLane, Timeline};
use crate::fieldtest::marks::{Attempt, Decision, DecisionAt, Step};

/// Height of one device lane.
const LANE: f64 = 96.0;

pub(super) fn x_of(ms: u64, span: u64) -> f64 {
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

pub(super) fn axis(h: &mut String, span: u64, y: f64) {
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

pub(super) fn timeline(h: &mut String, t: &Timeline) {
    let shared = t.links.len() == 1 && t.devices.len() > 1;
    let lanes = t.devices.len() as f64 * LANE + if shared { 48.0 } else { 0.0 };
    let _ = write!(
        h,
        "<svg width=\"{WIDTH}\" height=\"{}\" role=\"img\" aria-label=\"timeline\">",
        lanes + 24.0
    );
    axis(h, t.span_ms, lanes);
    let mut y = 0.0;
    if shared {
        let _ = write!(h, "<text x=\"4\" y=\"{}\">shared link</text>", y + 34.0);
        conns(h, &t.links[0], t.span_ms, y);
        y += 48.0;
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
            "<rect class=\"conn\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\" rx=\"2\"><title>connection {} · {:.1}–{:.1} s · up {} B, down {} B · {}</title></rect>",
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

/// The label, the lane's baseline, and its link's connections and faults.
fn lane_head(h: &mut String, d: &DeviceLane, t: &Timeline, y: f64, own_link: bool) {
    let refusals = d.attempts.iter().filter(|a| refused(&a.outcome)).count();
    let failed = d.attempts.iter().filter(|a| !a.ok).count() - refusals;
    let _ = write!(
        h,
        "<text x=\"4\" y=\"{}\">device {}</text><text x=\"4\" y=\"{}\" fill=\"#777\">{} captures{}</text><text x=\"4\" y=\"{}\" fill=\"#777\">{} exchanges, {failed} failed, {refusals} refused</text><line x1=\"{LABEL}\" y1=\"{:.1}\" x2=\"{WIDTH}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
        y + 28.0,
        d.index,
        y + 44.0,
        d.captures.len(),
        if d.kills > 0 {
            format!(", {} kills", d.kills)
        } else {
            String::new()
        },
        y + 60.0,
        d.attempts.len(),
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
                "<text class=\"fault\" x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\" font-weight=\"bold\">×<title>{} at {:.2} s {}</title></text>",
                x - 4.0,
                y + 20.0,
                esc(&e.kind),
                e.at_ms as f64 / 1000.0,
                esc(&e.detail)
            );
        }
    }
}

fn device_lane(h: &mut String, d: &DeviceLane, t: &Timeline, y: f64, own_link: bool) {
    lane_head(h, d, t, y, own_link);
    for c in &d.captures {
        let x = x_of(*c, t.span_ms);
        let _ = write!(
            h,
            "<path class=\"capture\" d=\"M{:.1} {:.1} l8 0 l-4 8 z\" fill=\"#1f77b4\"><title>capture saved at {:.1} s</title></path>",
            x - 4.0,
            y + 8.0,
            *c as f64 / 1000.0
        );
    }
    for a in &d.attempts {
        attempt(h, a, t.span_ms, y + 42.0);
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
            "<circle class=\"endpoint\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\"><title>endpoint: {} at {:.1} s{}</title></circle>",
            y + 66.0,
            esc(what),
            *at as f64 / 1000.0,
            if *receipt {
                ", signed receipt kept on the phone"
            } else {
                ""
            }
        );
    }
    for dec in &d.decisions {
        decision(h, dec, t.span_ms, y + 86.0);
    }
}

/// Whether a failed exchange was the endpoint's refusal (a 4xx other than 408 and 429: the
/// support is rejected or the upload must start over) rather than a fault of the link or a
/// busy server (no answer, 408, 429, 5xx).
fn refused(outcome: &str) -> bool {
    outcome
        .parse::<u16>()
        .is_ok_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
}

/// One exchange: a bar from its start to its end, coloured by step; red when a fault ended
/// it, orange when the endpoint refused it.
fn attempt(h: &mut String, a: &Attempt, span: u64, y: f64) {
    let (x1, x2) = (x_of(a.start_ms, span), x_of(a.end_ms, span));
    let (what, fill) = match a.step {
        Step::Patch => ("upload attempt (PATCH part bytes)", "#1f77b4"),
        Step::Commit => ("commit attempt (signed commit, receipt back)", "#9467bd"),
        Step::Create => ("upload created (POST)", "#9ecae1"),
        Step::Offset => ("resume: offset asked (HEAD)", "#9ecae1"),
        Step::Catalog => ("catalog refreshed (GET)", "#c7c7c7"),
        Step::Other => ("other exchange", "#c7c7c7"),
    };
    let (class, fill, how) = if a.ok {
        ("ok", fill, format!("answered {}", a.outcome))
    } else if refused(&a.outcome) {
        (
            "refused",
            "#ff7f0e",
            format!("REFUSED by the endpoint: {}", a.outcome),
        )
    } else {
        ("fault", "#d62728", format!("FAILED: {}", a.outcome))
    };
    let _ = write!(
        h,
        "<rect class=\"attempt {class}\" data-step=\"{}\" x=\"{x1:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{fill}\" rx=\"2\"><title>{what} · {:.2}–{:.2} s · {}</title></rect>",
        a.step.name(),
        (x2 - x1).max(3.0),
        a.start_ms as f64 / 1000.0,
        a.end_ms as f64 / 1000.0,
        esc(&how)
    );
}

/// The engine's decision after an attempt: ↻ retried later, ✓ receipt kept, ⚠ quarantined.
fn decision(h: &mut String, d: &DecisionAt, span: u64, y: f64) {
    let (class, glyph, fill, what) = match d.what {
        Decision::Retry => ("retry", "↻", "#ff7f0e", "attempt failed, retried later"),
        Decision::Receipt => (
            "receipt",
            "✓",
            "#2ca02c",
            "signed receipt verified and kept",
        ),
        Decision::Quarantined => ("quarantined", "⚠", "#8c564b", "quarantined on the phone"),
    };
    let _ = write!(
        h,
        "<text class=\"decision {class}\" x=\"{:.1}\" y=\"{y:.1}\" fill=\"{fill}\">{glyph}<title>{what} at {:.2} s: {}</title></text>",
        x_of(d.at_ms, span) - 4.0,
        d.at_ms as f64 / 1000.0,
        esc(&d.detail)
    );
}
