//! Field-testing commands: `apoyo proxy` (a fault-injecting TCP proxy between a phone or a
//! device and an endpoint) and `apoyo fieldtest` (a whole field scenario with its report), plus
//! the hidden `fieldtest-device` process `--kill-rate` SIGKILLs. The work is in the
//! `apoyo-fieldkit` crate; this file parses flags and prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use apoyo_fieldkit::profile::{self, Profile};
use apoyo_fieldkit::proxy::{self, FaultLog, ProxyConfig};
use clap::Args;

use crate::{CliError, CliResult};

/// The link: a named profile and an override for each of its figures.
#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// good | 3g | edge | gprs | 2g-rural | lossy | flapping | blackhole | slow-server | none
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
    /// Segments lost, % (each costs one retransmission timeout).
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
