//! The sync commands: device register/activate, sync, receipts, retry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use apoyo_sync::protocol::Provider;
use apoyo_sync::sync::{self, HttpTransport, SyncOptions, SyncReport, TlsConfig};
use clap::Args;

use crate::store_cmds::open_store;
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
    let mut s = open_store(store)?;
    let transport = HttpTransport::new(endpoint, &tls.config()?)?;
    let resp = sync::register_blocking(&mut s, &transport, endpoint, email, provider, &front)?;
    println!(
        "registered; the activation code was sent by email and expires at {}",
        rfc3339(resp.code_expires_at)
    );
    Ok(())
}

pub fn activate(store: &Path, code: &str, tls: &TlsArgs) -> CliResult {
    let mut s = open_store(store)?;
    let url = s.endpoint_url()?.ok_or(apoyo_sync::Error::NotRegistered)?;
    let transport = HttpTransport::new(&url, &tls.config()?)?;
    let resp = sync::activate_blocking(&mut s, &transport, code)?;
    println!(
        "activated until {}; {} open process(es)",
        rfc3339(resp.expires_at),
        resp.processes.len()
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
    let mut s = open_store(store)?;
    let url = s.endpoint_url()?.ok_or(apoyo_sync::Error::NotRegistered)?;
    let transport = HttpTransport::new(&url, &tls.config()?)?;
    let mut opts = SyncOptions::default();
    if let Some(b) = budget {
        opts.budget = parse_budget(&b)?;
    }
    let bar = progress_bar(s.pending_count()?);
    if let Some(bar) = &bar {
        let b = bar.clone();
        opts.progress = Some(std::sync::Arc::new(move |p: &sync::Progress| {
            b.set_length(p.done + p.pending);
            b.set_position(p.done);
            b.set_message(format!("{} KiB sent", p.bytes_sent / 1024));
        }));
    }
    let report = sync::sync_blocking(&mut s, &transport, opts)?;
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
        sync::StopReason::NeedsActivation => Err(CliError::Engine(apoyo_sync::Error::NotActivated)),
        sync::StopReason::Budget => {
            eprintln!(
                "apoyo: the time budget ended; {} capture(s) wait for the next run",
                report.pending
            );
            Ok(())
        }
        sync::StopReason::Drained => Ok(()),
        // The CLI sets no run control, so nothing holds its runs.
        sync::StopReason::Held(h) => Err(CliError::Engine(apoyo_sync::Error::Transient(
            h.describe().into(),
        ))),
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
                apoyo_sync::protocol::ReceiptResult::Counted => "counted".to_string(),
                apoyo_sync::protocol::ReceiptResult::Duplicate => {
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
    let mut s = open_store(store)?;
    s.retry_quarantined(&id.parse()?)?;
    println!("{id} is queued again");
    Ok(())
}
