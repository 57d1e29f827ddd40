//! `apoyo serve`: the reference INE endpoint, on a SQLite file or, as one of several replicas,
//! on a PostgreSQL database with a shared blob folder (ADR 0019).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use apoyo_endpoint::{DatabaseUrl, EndpointConfig, IpNet, RegistrationLimits, TrustedForwarding};
use apoyo_sync::Process;

use crate::{CliError, CliResult, read_file};

/// Where the endpoint keeps its state: `--db` (a SQLite path or a PostgreSQL URL, else
/// [`DATABASE_ENV`]) and `--blobs`.
pub struct Storage {
    pub db: Option<String>,
    pub blobs: Option<PathBuf>,
}

/// The environment variable `--db` defaults to.
pub const DATABASE_ENV: &str = "APOYO_DATABASE_URL";

impl Storage {
    /// `--db`, else the environment's database URL.
    fn database(&self) -> Result<String, CliError> {
        match &self.db {
            Some(db) => Ok(db.clone()),
            None => std::env::var(DATABASE_ENV)
                .map_err(|_| CliError::Usage(format!("--db is required (or set {DATABASE_ENV})"))),
        }
    }

    /// Applies the storage options to `cfg`; the line that says where state is kept (never
    /// with the database password).
    fn apply(&self, cfg: &mut EndpointConfig) -> Result<String, CliError> {
        let db = self.database()?;
        cfg.blob_dir = self.blobs.clone();
        if !DatabaseUrl::is_postgres(&db) {
            // Anything that looks like a connection string is refused, never taken for a file
            // name (and never echoed: it may hold a password).
            if db.contains("://") || db.contains('=') {
                return Err(CliError::Usage(
                    "--db: neither a postgres:// URL nor a SQLite file path".into(),
                ));
            }
            cfg.db_path = PathBuf::from(&db);
            return Ok(format!("database sqlite {db}\n"));
        }
        let url: DatabaseUrl = db
            .parse()
            .map_err(|e: apoyo_endpoint::EndpointError| CliError::Usage(format!("--db: {e}")))?;
        let Some(blobs) = &self.blobs else {
            return Err(CliError::Usage(
                "--blobs is required with a PostgreSQL database: the blob folder every replica shares"
                    .into(),
            ));
        };
        let line = format!("database {url} (blobs {})\n", blobs.display());
        cfg.database = Some(url);
        Ok(line)
    }
}

/// The registration budgets and the trusted forwarded header (`apoyo serve`; issue 17).
#[derive(clap::Args, Debug)]
pub struct RegistrationArgs {
    /// Registrations per source address (IPv4, or IPv6 /64) per window.
    #[arg(long, default_value_t = apoyo_endpoint::DEFAULT_REGISTRATIONS_PER_SOURCE)]
    registrations_per_source: u32,
    /// Registrations per IPv6 /48 (all its /64 sources together) per window.
    #[arg(long = "registrations-per-ipv6-48", default_value_t = apoyo_endpoint::DEFAULT_REGISTRATIONS_PER_IPV6_SITE)]
    registrations_per_ipv6_site: u32,
    /// Registrations per window, all sources and replicas together.
    #[arg(long, default_value_t = apoyo_endpoint::DEFAULT_REGISTRATIONS_GLOBAL)]
    registrations_global: u32,
    /// Codes mailed per email address, and per device key, per window.
    #[arg(long, default_value_t = apoyo_endpoint::DEFAULT_REGISTRATIONS_PER_ADDRESS)]
    registrations_per_address: u32,
    /// The registration budgets' window, in seconds.
    #[arg(long, default_value_t = apoyo_endpoint::DEFAULT_REGISTRATION_WINDOW.as_secs())]
    registration_window_secs: u64,
    /// Seconds an unactivated registration is kept (never while its code is valid).
    #[arg(long, default_value_t = apoyo_endpoint::DEFAULT_UNACTIVATED_TTL.as_secs())]
    unactivated_ttl_secs: u64,
    /// Behind a TLS terminator: the header it names the client in (`x-forwarded-for`, or
    /// `forwarded`); on connections from --trusted-proxy, its right-most address that is not a
    /// trusted proxy is the source.
    #[arg(long, requires = "trusted_proxy")]
    trusted_forwarded_header: Option<String>,
    /// The address, or CIDR range (`10.0.0.0/8`), of proxies whose forwarded header is trusted
    /// (repeatable).
    #[arg(long, requires = "trusted_forwarded_header", value_parser = proxy_range)]
    trusted_proxy: Vec<IpNet>,
    #[command(flatten)]
    commit_refusals: CommitRefusalArgs,
}

/// The refused-commit budget per device (`apoyo serve`; issue 17): once a device has this many
/// refused commits within the window, its commits get `429 rate_limited`.
#[derive(clap::Args, Debug)]
pub struct CommitRefusalArgs {
    /// Refused commits one device may have per window (at least 1).
    #[arg(long = "commit-refusals", default_value_t = apoyo_endpoint::DEFAULT_COMMIT_REFUSALS)]
    max: u32,
    /// The refused-commit window, in seconds (1 to 86400).
    #[arg(long = "commit-refusal-window-secs", default_value_t = apoyo_endpoint::DEFAULT_COMMIT_REFUSAL_WINDOW.as_secs())]
    window_secs: u64,
}

impl CommitRefusalArgs {
    /// Sets the budget in `cfg`; a zero budget or a window outside one second to a day is a
    /// usage error.
    fn apply(&self, cfg: &mut EndpointConfig) -> Result<(), CliError> {
        if self.max == 0 {
            return Err(CliError::Usage(
                "--commit-refusals must allow at least one refused commit".into(),
            ));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return Err(CliError::Usage(
                "--commit-refusal-window-secs must be between 1 and 86400".into(),
            ));
        }
        cfg.commit_refusals = self.max;
        cfg.commit_refusal_window = Duration::from_secs(self.window_secs);
        Ok(())
    }
}

/// `--trusted-proxy`: a CIDR range, or one address.
fn proxy_range(v: &str) -> Result<IpNet, String> {
    v.parse::<IpNet>()
        .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{v}' is neither an address nor a CIDR range"))
}

impl RegistrationArgs {
    fn limits(&self) -> Result<RegistrationLimits, CliError> {
        let forwarded = match &self.trusted_forwarded_header {
            Some(h) => Some(
                TrustedForwarding::with_ranges(h, self.trusted_proxy.clone())
                    .map_err(|e| CliError::Usage(format!("--trusted-forwarded-header: {e}")))?,
            ),
            None => None,
        };
        let limits = RegistrationLimits {
            window: Duration::from_secs(self.registration_window_secs),
            per_address: self.registrations_per_address,
            per_source: self.registrations_per_source,
            per_ipv6_site: self.registrations_per_ipv6_site,
            global: self.registrations_global,
            unactivated_ttl: Duration::from_secs(self.unactivated_ttl_secs),
            forwarded,
            ..RegistrationLimits::default()
        };
        limits.check().map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(limits)
    }
}

pub fn serve(
    storage: &Storage,
    listen: &str,
    keys: &Path,
    processes: &Path,
    dev: bool,
    registration: &RegistrationArgs,
) -> CliResult {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "--listen: '{listen}' is not an address like 127.0.0.1:8080"
        ))
    })?;
    if dev && !addr.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--dev hands out activation codes to anyone who asks; it serves only on a loopback address (127.0.0.1 or ::1), not {addr}"
        )));
    }
    // v1's `--key <folder>/endpoint.key` names a file in (or beside) the key folder.
    let folder = match keys.parent() {
        Some(parent) if !keys.is_dir() => parent,
        _ => keys,
    };
    let ring =
        apoyo_endpoint::keyring::load_dir(folder).map_err(|e| CliError::Input(e.to_string()))?;
    let list = Process::parse_json_list(&read_file(processes, "process file (--processes)")?)?;
    let mut cfg = EndpointConfig::new(PathBuf::new(), ring, list);
    cfg.dev = dev;
    cfg.registration = registration.limits()?;
    registration.commit_refusals.apply(&mut cfg)?;
    let where_kept = storage.apply(&mut cfg)?;
    install_log();
    apoyo_endpoint::serve_blocking(cfg, addr, |bound| {
        // One write, and a closed stdout (a supervisor that read the first line and went
        // away) never stops the endpoint: `println!` would panic on the broken pipe.
        let mut text = format!("listening on http://{bound}\n{where_kept}");
        if dev {
            text.push_str("development routes enabled: /v1/dev/mailbox/{email}, /v1/admin/stats\n");
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    })
    .map_err(|e| CliError::Io(e.to_string()))
}

/// The environment variable that filters the endpoint's log (`tracing`'s `EnvFilter` syntax).
pub const LOG_ENV: &str = "RUST_LOG";

/// Sends the endpoint's log to stderr, one line per event, filtered by [`LOG_ENV`] (`info`
/// when unset or unparsable). The endpoint logs ids, routes, statuses and counts, never
/// personal data, tokens or request bodies.
fn install_log() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already installed (then that one logs).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
