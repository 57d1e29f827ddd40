//! The sync commands: device register/activate, sync, receipts, retry.
//!
//! A device command acts as the phone does, so it uses only the app-facing facade
//! ([`apoyo_sync::Engine`]); `tests/public_surface.rs` fails if this file imports anything
//! below it (ADR 0016).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::{
    Event, Listener, Progress, Provider, ReceiptResult, StopReason, SyncReport, TlsConfig,
};
use clap::Args;

use crate::store_cmds::{open_engine, open_store};
use crate::{CliError, CliResult, read_file};

/// TLS settings for an https endpoint.
#[derive(Args, Clone, Default)]
pub struct TlsArgs {
    /// Trust only this CA (PEM) for the endpoint.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Accept only an endpoint whose public key has this SHA-256 (hex, of the DER
    /// SubjectPublicKeyInfo); repeat for backup pins.
    #[arg(long = "pin")]
    pub pins: Vec<String>,
}

impl TlsArgs {
    pub fn config(&self) -> CliResult<TlsConfig> {
        let ca_pem = match &self.ca {
            Some(p) => Some(read_file(p, "CA file (--ca)")?),
            None => None,
        };
        let mut pinned_spki_sha256 = Vec::new();
        for pin in &self.pins {
            let b =
                hex::decode(pin.trim()).map_err(|_| CliError::Usage("--pin must be hex".into()))?;
            pinned_spki_sha256.push(
                b.try_into()
                    .map_err(|_| CliError::Usage("--pin must be 32 bytes of hex".into()))?,
            );
        }
        Ok(TlsConfig {
            ca_pem,
            pinned_spki_sha256,
        })
    }
}

pub fn register(
    store: &Path,
    endpoint: &str,
    email: &str,
    provider: &str,
    front: &Path,
    tls: &TlsArgs,
) -> CliResult {
    let provider = match provider {
        "google" => Provider::Google,
        "facebook" => Provider::Facebook,
        _ => {
            return Err(CliError::Usage(
                "--provider must be google or facebook".into(),
            ));
        }
    };
    let front = read_file(front, "front image (--front)")?;
    let s = open_engine(store, tls.config()?)?;
    let resp = s.register(endpoint, email, provider, &front)?;
    println!(
        "registered; the activation code was sent by email and expires at {}",
        rfc3339(resp.code_expires_at)
    );
    Ok(())
}

pub fn activate(store: &Path, code: &str, tls: &TlsArgs) -> CliResult {
    let s = open_engine(store, tls.config()?)?;
    let resp = s.activate(code)?;
    println!(
        "activated until {}; {} open process(es)",
        rfc3339(resp.expires_at),
        resp.processes
    );
    Ok(())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

pub fn parse_budget(s: &str) -> CliResult<Duration> {
    humantime::parse_duration(s)
        .map_err(|_| CliError::Usage(format!("--budget: '{s}' is not a duration like 30s or 5m")))
}

pub fn report_json(r: &SyncReport) -> String {
    serde_json::json!({
        "committed": r.committed,
        "duplicates": r.duplicates,
        "quarantined": r.quarantined,
        "pending": r.pending,
        "bytes_sent": r.bytes_sent,
        "retries": r.retries,
    })
    .to_string()
}

pub fn run_sync(store: &Path, budget: Option<String>, json: bool, tls: &TlsArgs) -> CliResult {
    let s = open_engine(store, tls.config()?)?;
    let status = s.status()?;
    if !status.registered {
        return Err(apoyo_sync::Error::NotRegistered.into());
    }
    let budget = budget.map(|b| parse_budget(&b)).transpose()?;
    let bar = progress_bar(status.queue.captured + status.queue.uploading);
    if let Some(bar) = &bar {
        s.set_listener(Some(Arc::new(BarListener(bar.clone()))));
    }
    let report = s.sync(budget)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", report_json(&report));
    } else {
        println!(
            "committed {}  duplicates {}  quarantined {}  pending {}  sent {} bytes  retries {}",
            report.committed,
            report.duplicates,
            report.quarantined,
            report.pending,
            report.bytes_sent,
            report.retries
        );
    }
    if let Some(problem) = report.receipt_problem {
        // Protocol v1.1: nothing was deleted on these receipts; the captures are kept.
        eprintln!(
            "apoyo: {} receipt(s) not trusted ({problem}); those captures were kept",
            report.untrusted_receipts
        );
    }
    match report.stopped {
        StopReason::NeedsActivation => Err(CliError::Engine(apoyo_sync::Error::NotActivated)),
        StopReason::Budget => {
            eprintln!(
                "apoyo: the time budget ended; {} capture(s) wait for the next run",
                report.pending
            );
            Ok(())
        }
        StopReason::Drained => Ok(()),
        // The CLI reports an unmetered link, sets no policy and never cancels, so nothing
        // holds its runs.
        StopReason::Held(h) => Err(CliError::Engine(apoyo_sync::Error::Transient(
            h.describe().into(),
        ))),
    }
}

/// Moves the progress bar as the engine reports progress.
struct BarListener(indicatif::ProgressBar);

impl Listener for BarListener {
    fn on_event(&self, _event: &Event) {}

    fn on_progress(&self, p: &Progress) {
        self.0.set_length(p.done + p.pending);
        self.0.set_position(p.done);
        self.0
            .set_message(format!("{} KiB sent", p.bytes_sent / 1024));
    }
}

fn progress_bar(len: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} supports  {msg}")
    {
        bar.set_style(style);
    }
    Some(bar)
}

pub fn receipts(store: &Path, json: bool) -> CliResult {
    let s = open_store(store)?;
    let list = s.receipts()?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&list).map_err(|e| CliError::Io(e.to_string()))?
        );
    } else {
        for r in &list {
            let result = match r.result {
                ReceiptResult::Counted => "counted".to_string(),
                ReceiptResult::Duplicate => {
                    format!(
                        "duplicate of {}",
                        r.first_capture_id.as_deref().unwrap_or("?")
                    )
                }
            };
            println!(
                "{}  {}  {}  signature {}",
                r.capture_id,
                r.counted_at,
                result,
                if r.verified { "ok" } else { "INVALID" }
            );
        }
    }
    Ok(())
}

pub fn retry(store: &Path, id: &str) -> CliResult {
    let s = open_store(store)?;
    s.retry(&id.parse()?)?;
    println!("{id} is queued again");
    Ok(())
}
