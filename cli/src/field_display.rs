//! What `apoyo fieldtest` shows while it runs (one line per device: captured, bytes sent,
//! counted; the faults so far) and the plain-text report at the end. On a terminal the lines
//! are redrawn in place (indicatif); otherwise a progress line goes to stderr every 5 s.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use apoyo_fieldkit::fieldtest::{Report, Snapshot, Verdict};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Display {
    bars: Vec<ProgressBar>,
    footer: Option<ProgressBar>,
    _multi: Option<MultiProgress>,
    last_plain: Duration,
}

fn kb(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

impl Display {
    pub fn new(devices: usize) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display {
                bars: Vec::new(),
                footer: None,
                _multi: None,
                last_plain: Duration::ZERO,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = (0..devices)
            .map(|_| multi.add(ProgressBar::new_spinner().with_style(style.clone())))
            .collect();
        let footer = multi.add(ProgressBar::new_spinner().with_style(style));
        Display {
            bars,
            footer: Some(footer),
            _multi: Some(multi),
            last_plain: Duration::ZERO,
        }
    }

    pub fn tick(&mut self, s: &Snapshot) {
        let footer = format!(
            "{:>5.0} s  faults so far {}  bytes on the wire {}",
            s.elapsed.as_secs_f64(),
            s.faults,
            kb(s.wire_bytes)
        );
        let Some(f) = &self.footer else {
            if s.elapsed >= self.last_plain + Duration::from_secs(5) {
                self.last_plain = s.elapsed;
                let counted: u64 = s.devices.iter().map(|d| d.counted).sum();
                let captured: u64 = s.devices.iter().map(|d| d.captured).sum();
                eprintln!("fieldtest: {footer}  decided {counted}/{captured}");
            }
            return;
        };
        for (i, (b, d)) in self.bars.iter().zip(&s.devices).enumerate() {
            b.set_message(format!(
                "device {i:<3} captured {:<5} sent {:<12} counted {:<5}{}{}",
                d.captured,
                kb(d.sent_bytes),
                d.counted,
                if d.kills > 0 {
                    format!(" kills {}", d.kills)
                } else {
                    String::new()
                },
                if d.drained { "  drained" } else { "" }
            ));
        }
        f.set_message(footer);
    }

    pub fn finish(&self) {
        for b in self.bars.iter().chain(self.footer.iter()) {
            b.finish();
        }
    }
}

/// The report for a person reading the terminal.
pub fn print_report(r: &Report, html: Option<&Path>) {
    let verdict = match r.verdict() {
        Verdict::LostOrCountedTwice => "FAILED: supports lost or counted twice",
        Verdict::Pending => "deadline reached with supports pending on the phones (nothing lost)",
        Verdict::Ok => "ok: every support counted exactly once, none lost",
    };
    println!("result      {verdict}");
    println!(
        "supports    captured {}, counted {}, duplicates expected {} found {}, quarantined {} {:?}, refused on the phone {}, pending {}",
        r.captured,
        r.counted,
        r.duplicates_expected,
        r.duplicates_found,
        r.quarantined,
        r.quarantined_by_reason,
        r.refused_locally,
        r.pending
    );
    println!(
        "lost        {}   counted twice {}",
        r.lost, r.double_counted
    );
    let ratio = r
        .goodput_ratio
        .map(|x| format!(" = {:.0} % of the link", x * 100.0))
        .unwrap_or_default();
    println!(
        "link        wire bytes {}, payload bytes {}, retries {}, drained in {:.1} s, goodput {:.1} kbit/s{ratio}",
        r.wire_bytes, r.payload_bytes, r.retries, r.drain_seconds, r.goodput_kbps
    );
    println!("faults      {:?}", r.faults);
    if let Some(p) = html {
        println!("report      {}", p.display());
    }
    println!("replay      {}", r.command);
}
