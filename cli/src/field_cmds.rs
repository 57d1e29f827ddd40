//! Field-testing commands: `apoyo proxy` (a fault-injecting TCP proxy between a phone or a
//! device and an endpoint) and `apoyo fieldtest` (a whole field scenario with its report), plus
//! the hidden `fieldtest-device` process `--kill-rate` SIGKILLs. The work is in the
//! `apoyo-fieldkit` crate; this file parses flags and prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use apoyo_fieldkit::fieldtest::{self, External, FieldConfig, Verdict};
use apoyo_fieldkit::profile::{self, Profile};
use apoyo_fieldkit::proxy::{self, FaultLog, ProxyConfig};
use apoyo_sync::EndpointPublicKey;
use clap::Args;

use crate::{CliError, CliResult};

/// The link: a named profile and an override for each of its figures.
#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// good | 3g | edge | gprs | 2g-rural | lossy | flapping | blackhole | slow-server | none.
    /// Loss in a profile is a retransmission delay, not a drop: a TCP proxy sees the stream
    /// after the kernel has retransmitted what was lost. Real packet drops:
    /// scripts/netns-loss.sh (docs/field-testing.md).
    #[arg(long, default_value = "good")]
    pub profile: String,
    /// Seed of the fault schedule (default: random, printed so the run can be replayed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device → endpoint rate, kbit/s (0: unlimited).
    #[arg(long)]
    pub up_kbps: Option<f64>,
    /// Endpoint → device rate, kbit/s (0: unlimited).
    #[arg(long)]
    pub down_kbps: Option<f64>,
    /// One-way delay added in each direction, ms.
    #[arg(long)]
    pub delay_ms: Option<u64>,
    /// Extra one-way delay, uniform in 0..=N ms per segment.
    #[arg(long)]
    pub jitter_ms: Option<u64>,
    /// Segments "lost", %: each is held one retransmission timeout (4 x (delay + jitter), at
    /// least 200 ms), what TCP pays for a loss. Not a drop: a TCP proxy cannot drop a segment,
    /// the kernel has already retransmitted it (real drops: scripts/netns-loss.sh).
    #[arg(long)]
    pub loss_pct: Option<f64>,
    /// Connections refused (reset at once), %.
    #[arg(long)]
    pub refuse_pct: Option<f64>,
    /// Connections cut at a random byte count, %.
    #[arg(long)]
    pub cut_pct: Option<f64>,
    /// Largest byte count a cut or stall happens at.
    #[arg(long)]
    pub cut_max_bytes: Option<u64>,
    /// Reset every connection after N bytes device → endpoint.
    #[arg(long)]
    pub reset_up_after: Option<u64>,
    /// Reset every connection after N bytes endpoint → device.
    #[arg(long)]
    pub reset_down_after: Option<u64>,
    /// Connections that stall (no reset) at a random byte count, %.
    #[arg(long)]
    pub stall_pct: Option<f64>,
    /// Every connection stalls after N bytes (in either direction).
    #[arg(long)]
    pub stall_after: Option<u64>,
    /// Plain-HTTP mode: connections answered 429/503 by the proxy itself, %.
    #[arg(long)]
    pub status_pct: Option<f64>,
    /// Retry-After of those answers, seconds.
    #[arg(long)]
    pub retry_after: Option<u32>,
    /// Flapping: mean seconds up.
    #[arg(long)]
    pub flap_up_secs: Option<f64>,
    /// Flapping: mean seconds down.
    #[arg(long)]
    pub flap_down_secs: Option<f64>,
    /// Slow server: each answer's first byte waits N ms.
    #[arg(long)]
    pub server_delay_ms: Option<u64>,
}

fn rate(v: f64) -> Option<f64> {
    (v > 0.0).then_some(v)
}

impl LinkArgs {
    /// The named profile with every override applied.
    pub fn profile(&self) -> CliResult<Profile> {
        let mut p = profile::by_name(&self.profile).ok_or_else(|| {
            CliError::Usage(format!(
                "unknown --profile (one of: {})",
                profile::NAMES.join(", ")
            ))
        })?;
        let pct = |v: Option<f64>, flag: &str| -> CliResult<Option<f64>> {
            match v {
                Some(x) if !(0.0..=100.0).contains(&x) => Err(CliError::Usage(format!(
                    "invalid value for --{flag} (a percentage, 0 to 100)"
                ))),
                other => Ok(other),
            }
        };
        let non_negative = |v: Option<f64>, flag: &str| -> CliResult<Option<f64>> {
            match v {
                Some(x) if !x.is_finite() || x < 0.0 => Err(CliError::Usage(format!(
                    "invalid value for --{flag} (a number, 0 or more)"
                ))),
                other => Ok(other),
            }
        };
        if let Some(v) = non_negative(self.up_kbps, "up-kbps")? {
            p.up_kbps = rate(v);
        }
        if let Some(v) = non_negative(self.down_kbps, "down-kbps")? {
            p.down_kbps = rate(v);
        }
        p.delay_ms = self.delay_ms.unwrap_or(p.delay_ms);
        p.jitter_ms = self.jitter_ms.unwrap_or(p.jitter_ms);
        p.loss_pct = pct(self.loss_pct, "loss-pct")?.unwrap_or(p.loss_pct);
        p.refuse_pct = pct(self.refuse_pct, "refuse-pct")?.unwrap_or(p.refuse_pct);
        p.cut_pct = pct(self.cut_pct, "cut-pct")?.unwrap_or(p.cut_pct);
        p.cut_max_bytes = self.cut_max_bytes.unwrap_or(p.cut_max_bytes).max(1);
        p.reset_up_after = self.reset_up_after.or(p.reset_up_after);
        p.reset_down_after = self.reset_down_after.or(p.reset_down_after);
        p.stall_pct = pct(self.stall_pct, "stall-pct")?.unwrap_or(p.stall_pct);
        p.stall_after = self.stall_after.or(p.stall_after);
        p.status_pct = pct(self.status_pct, "status-pct")?.unwrap_or(p.status_pct);
        p.retry_after_secs = self.retry_after.unwrap_or(p.retry_after_secs);
        p.flap_up_secs = non_negative(self.flap_up_secs, "flap-up-secs")?.unwrap_or(p.flap_up_secs);
        p.flap_down_secs =
            non_negative(self.flap_down_secs, "flap-down-secs")?.unwrap_or(p.flap_down_secs);
        if let Some(ms) = self.server_delay_ms {
            p.server_delay_ms = (ms, ms);
        }
        Ok(p)
    }

    /// The seed given, or a fresh one.
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| fastrand::u64(..))
    }
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Where devices (or a phone) connect, e.g. 0.0.0.0:8443.
    #[arg(long)]
    pub listen: String,
    /// The endpoint, host:port.
    #[arg(long)]
    pub upstream: String,
    /// Plain-HTTP mode: the proxy may answer 429/503 itself (--status-pct). Never for TLS.
    #[arg(long)]
    pub http: bool,
    /// Write fault lines to this file instead of stderr.
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub link: LinkArgs,
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("runtime: {e}")))
}

async fn resolve(addr: &str, flag: &str) -> CliResult<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CliError::Usage(format!("invalid value for --{flag} (host:port)")))
}

/// `apoyo proxy`: serves until Ctrl-C, then prints the summary.
pub fn proxy(a: ProxyArgs) -> CliResult {
    let profile = a.link.profile()?;
    let seed = a.link.seed();
    let sink: Box<dyn std::io::Write + Send> =
        match &a.log {
            Some(path) => Box::new(std::fs::File::create(path).map_err(|e| {
                CliError::Input(format!("cannot create the --log file: {}", e.kind()))
            })?),
            None => Box::new(std::io::stderr()),
        };
    let log = Arc::new(FaultLog::new(Some(sink)));
    runtime()?.block_on(async move {
        let cfg = ProxyConfig {
            listen: resolve(&a.listen, "listen").await?,
            upstream: resolve(&a.upstream, "upstream").await?,
            profile: profile.clone(),
            seed,
            http_mode: a.http,
            link: 0,
        };
        let px = proxy::start(cfg, log.clone())
            .await
            .map_err(|e| CliError::Io(format!("cannot listen on --listen: {e}")))?;
        println!(
            "proxying {} -> {} (profile {}, seed {seed}{})",
            px.addr,
            a.upstream,
            profile.name,
            if a.http { ", plain-HTTP mode" } else { "" }
        );
        println!("figures: {}", profile.source);
        let signal = tokio::signal::ctrl_c().await;
        let link = px.link.clone();
        px.shutdown().await;
        let mut summary = log.summary();
        // Live counters: connections still open at Ctrl-C count too.
        summary.connections = link.connections.load(Ordering::Relaxed);
        summary.up_bytes = link.up_bytes.load(Ordering::Relaxed);
        summary.down_bytes = link.down_bytes.load(Ordering::Relaxed);
        println!("summary: {summary}");
        signal.map_err(|e| CliError::Io(format!("signal: {e}")))
    })
}

#[derive(Args, Debug)]
pub struct FieldtestArgs {
    /// Simulated devices, each with its own store and device key.
    #[arg(long, default_value_t = 3)]
    pub devices: usize,
    /// Supports each device captures (a few shared with another device, a few invalid).
    #[arg(long, default_value_t = 10)]
    pub captures: usize,
    /// Synthetic capture size in bytes (all four images).
    #[arg(long, default_value_t = 64 * 1024)]
    pub capture_bytes: usize,
    /// One link (cell) for all devices instead of one each.
    #[arg(long)]
    pub shared_link: bool,
    /// Run devices as processes, SIGKILLed this many times per minute on average.
    #[arg(long)]
    pub kill_rate: Option<f64>,
    /// Stop after this long even if supports are pending (e.g. 90s, 10m).
    #[arg(long, default_value = "10m")]
    pub deadline: String,
    /// Print the report as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Write the visual report (one self-contained HTML file).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Use this endpoint (http://host:port, running with --dev) instead of an in-process one.
    #[arg(long, requires_all = ["endpoint_db", "endpoint_pub"])]
    pub endpoint: Option<String>,
    /// The external endpoint's database file (read-only, to count what it holds).
    #[arg(long)]
    pub endpoint_db: Option<PathBuf>,
    /// The external endpoint's public key file (from `apoyo endpoint-keygen`).
    #[arg(long)]
    pub endpoint_pub: Option<PathBuf>,
    /// Plain-HTTP mode of the proxy (its own 429/503 answers, --status-pct).
    #[arg(long)]
    pub http: bool,
    /// Keep stores, journals and the fault log in this folder (default: a temporary one).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub link: LinkArgs,
}

/// Exit code when a support was lost or counted twice.
const EXIT_LOST: u8 = 5;
/// Exit code when supports are still pending at the deadline (nothing lost).
const EXIT_PENDING: u8 = 6;

/// `apoyo fieldtest`: 0 when everything was counted exactly once, 5 when anything was lost or
/// counted twice, 6 when supports were still pending at the deadline (pending is not lost).
pub fn fieldtest(a: FieldtestArgs) -> std::process::ExitCode {
    match fieldtest_run(a) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("apoyo: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

fn field_err(e: apoyo_fieldkit::fieldtest::FieldError) -> CliError {
    use apoyo_fieldkit::fieldtest::FieldError as F;
    match e {
        F::Engine(e) => CliError::Engine(e),
        other => CliError::Io(other.to_string()),
    }
}

fn fieldtest_config(a: &FieldtestArgs, work: PathBuf) -> CliResult<FieldConfig> {
    if a.devices == 0 || a.devices > 64 {
        return Err(CliError::Usage(
            "invalid value for --devices (1 to 64)".into(),
        ));
    }
    if a.captures == 0 || a.captures > 10_000 {
        return Err(CliError::Usage(
            "invalid value for --captures (1 to 10000)".into(),
        ));
    }
    if !(4096..=6 * 1024 * 1024).contains(&a.capture_bytes) {
        return Err(CliError::Usage(
            "invalid value for --capture-bytes (4096 to 6291456)".into(),
        ));
    }
    if a.kill_rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        return Err(CliError::Usage(
            "invalid value for --kill-rate (kills per minute, above 0)".into(),
        ));
    }
    let deadline = humantime::parse_duration(&a.deadline)
        .map_err(|_| CliError::Usage("invalid value for --deadline (e.g. 90s, 10m)".into()))?;
    let endpoint = match (&a.endpoint, &a.endpoint_db, &a.endpoint_pub) {
        (Some(url), Some(db), Some(public_file)) => {
            let text = crate::read_file(public_file, "endpoint public key (--endpoint-pub)")?;
            let public = EndpointPublicKey::from_text(String::from_utf8_lossy(&text).trim())?;
            // v1.1: the INE root beside the seal key, where `apoyo endpoint-keygen` writes it.
            let root_file = public_file
                .parent()
                .map(|d| d.join(crate::keys::ROOT_PUBLIC_FILE))
                .filter(|p| p.exists());
            let ine_root = match root_file {
                Some(p) => Some(crate::keys::read_root(&p)?),
                None => None,
            };
            Some(External {
                url: url.clone(),
                public,
                ine_root,
                db: db.clone(),
            })
        }
        _ => None,
    };
    let seed = a.link.seed();
    let mut command: Vec<String> = std::env::args().collect();
    if a.link.seed.is_none() {
        command.extend(["--seed".into(), seed.to_string()]);
    }
    if let Some(first) = command.first_mut() {
        *first = "apoyo".into();
    }
    Ok(FieldConfig {
        devices: a.devices,
        captures: a.captures,
        profile: a.link.profile()?,
        seed,
        capture_bytes: a.capture_bytes,
        shared_link: a.shared_link,
        kill_rate: a.kill_rate,
        deadline,
        endpoint,
        http_mode: a.http,
        device_exe: std::env::current_exe().ok(),
        work_dir: work,
        backoff: apoyo_fieldkit::fieldtest::field_backoff(),
        command: command.join(" "),
    })
}

fn fieldtest_run(a: FieldtestArgs) -> CliResult<u8> {
    let tmp;
    let work = match &a.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| CliError::Input(format!("cannot create --work-dir: {}", e.kind())))?;
            d.clone()
        }
        None => {
            tmp =
                tempfile::tempdir().map_err(|e| CliError::Io(format!("temporary folder: {e}")))?;
            tmp.path().to_path_buf()
        }
    };
    let cfg = fieldtest_config(&a, work)?;
    if !a.json {
        println!(
            "fieldtest: {} devices x {} captures over '{}' (seed {})\nfigures: {}",
            cfg.devices, cfg.captures, cfg.profile.name, cfg.seed, cfg.profile.source
        );
    }
    let mut display = crate::field_display::Display::new(cfg.devices);
    let outcome = fieldtest::run(&cfg, &mut |s| display.tick(s)).map_err(field_err)?;
    display.finish();
    let r = &outcome.report;
    if let Some(path) = &a.report {
        let page = fieldtest::html::render(r, &outcome.timeline, &cfg.profile.source);
        std::fs::write(path, page)
            .map_err(|e| CliError::Input(format!("cannot write --report: {}", e.kind())))?;
    }
    if a.json {
        let line = serde_json::to_string(r).map_err(|e| CliError::Io(e.to_string()))?;
        println!("{line}");
    } else {
        crate::field_display::print_report(r, a.report.as_deref());
    }
    Ok(match r.verdict() {
        Verdict::LostOrCountedTwice => EXIT_LOST,
        Verdict::Pending => EXIT_PENDING,
        Verdict::Ok => 0,
    })
}

#[derive(Args, Debug)]
pub struct DeviceArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub deadline_ms: u64,
}

/// `apoyo fieldtest-device` (hidden): one device of a `--kill-rate` run.
pub fn device(a: DeviceArgs) -> CliResult {
    let drained = fieldtest::device::child_main(
        &a.dir,
        &a.url,
        std::time::Duration::from_millis(a.deadline_ms),
    )
    .map_err(field_err)?;
    if drained {
        Ok(())
    } else {
        Err(CliError::Input(
            "deadline reached with supports pending".into(),
        ))
    }
}

#[cfg(test)]
#[path = "field_cmds_tests.rs"]
mod tests;
