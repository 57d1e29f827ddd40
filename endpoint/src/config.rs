//! What the endpoint is started with, and the fault-injection hook field tests use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::{Process, SharedClock, SystemClock};

use crate::keyring::KeyRing;
use crate::registration_limits::RegistrationLimits;
use crate::store::DatabaseUrl;

/// How long a tus upload lives after its creation (tus `expiration` extension). A day covers a
/// phone that is offline overnight between two PATCHes of the same part.
pub const DEFAULT_UPLOAD_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a request body may go without a byte before the endpoint answers `408` and stops
/// reading it. A phone on a weak link stalls for seconds, not half a minute; a client that
/// sends nothing for this long holds a connection and a worker for nothing. The device
/// treats the `408` as transient and resumes (tus `HEAD`) or retries.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `upload_ttl` accepted: a year. (Longer would only keep abandoned uploads on
/// disk, and times past year 9999 have no HTTP date.)
pub const MAX_UPLOAD_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// How long a connection may take to send a request head, counted from when the endpoint
/// starts waiting for it (at accept, and after each answer on a kept-alive connection, so it
/// is also the idle keep-alive timeout). A head is a few hundred bytes: seconds even at 2G.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The slowest a request body may arrive, in bytes per second, averaged over each
/// `body_idle_timeout` window: 256 B/s is a ninth of an 18 kbit/s rural 2G link, so an honest
/// upload passes while a byte-a-second trickle does not hold a connection for days.
pub const DEFAULT_BODY_MIN_RATE: u32 = 256;

/// How many refused commits (`part_mismatch`, or `upload_missing` found while reading part
/// bytes) one device may have within [`DEFAULT_COMMIT_REFUSAL_WINDOW`] before its commits are
/// answered `429 rate_limited`. An honest device never repeats a refusal (it quarantines on
/// `part_mismatch` and uploads again on `upload_missing`), and receipts, stored rejections and
/// their replays are never counted, so a returning phone's backlog is never limited.
pub const DEFAULT_COMMIT_REFUSALS: u32 = 20;

/// The window of the refused-commit budget.
pub const DEFAULT_COMMIT_REFUSAL_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The endpoint's configuration.
pub struct EndpointConfig {
    /// The SQLite file (created if missing); unused when `database` is set.
    pub db_path: PathBuf,
    /// A PostgreSQL database shared by every replica (ADR 0019) instead of the SQLite file.
    /// Its password is never printed.
    pub database: Option<DatabaseUrl>,
    /// Where upload and support bytes live; default `<db_path>.blobs/`. With `database`, the
    /// folder every replica shares.
    pub blob_dir: Option<PathBuf>,
    /// The key ring: seal keys (open sealed data keys; the activation key agreement), receipt
    /// keys, their certificates from the INE root, and the duplicate secret.
    pub keys: KeyRing,
    /// The participation processes this endpoint accepts supports for.
    pub processes: Vec<Process>,
    /// Enables `/v1/dev/mailbox/{email}` and `/v1/admin/stats`.
    pub dev: bool,
    pub clock: SharedClock,
    /// tus expiration of an upload, counted from its creation.
    pub upload_ttl: Duration,
    /// The longest pause allowed between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// The slowest rate (bytes per second, over each `body_idle_timeout` window) a request
    /// body may arrive at; 0 disables the check.
    pub body_min_rate: u32,
    /// The longest wait for a request head (and so the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// The most connections open at once; `None` derives it from the file-descriptor limit.
    pub max_connections: Option<usize>,
    /// Registration budgets (per address and device key, per source, global), the TTL of
    /// unactivated registrations, and the trusted forwarded header.
    pub registration: RegistrationLimits,
    /// Refused commits one device may have within `commit_refusal_window` before its commits
    /// get `429 rate_limited` (at least 1). Counted in the database, so shared by replicas.
    pub commit_refusals: u32,
    /// The window of `commit_refusals` (1 second to a day).
    pub commit_refusal_window: Duration,
    /// Test and field-test fault hook: consulted before every routed request.
    pub chaos: Option<Arc<dyn Chaos>>,
}

impl EndpointConfig {
    /// A configuration with the defaults: no dev routes, the system clock, 24 h uploads, a 30 s
    /// body idle timeout, no chaos.
    pub fn new(db_path: PathBuf, keys: KeyRing, processes: Vec<Process>) -> Self {
        EndpointConfig {
            db_path,
            database: None,
            blob_dir: None,
            keys,
            processes,
            dev: false,
            clock: Arc::new(SystemClock),
            upload_ttl: DEFAULT_UPLOAD_TTL,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            body_min_rate: DEFAULT_BODY_MIN_RATE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: None,
            registration: RegistrationLimits::default(),
            commit_refusals: DEFAULT_COMMIT_REFUSALS,
            commit_refusal_window: DEFAULT_COMMIT_REFUSAL_WINDOW,
            chaos: None,
        }
    }

    /// The blob folder in use (`blob_dir`, or `<db_path>.blobs`).
    pub fn blob_dir(&self) -> PathBuf {
        match &self.blob_dir {
            Some(d) => d.clone(),
            None => {
                let mut s = self.db_path.clone().into_os_string();
                s.push(".blobs");
                PathBuf::from(s)
            }
        }
    }
}

impl std::fmt::Debug for EndpointConfig {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("db_path", &self.db_path)
            .field("database", &self.database)
            .field("blob_dir", &self.blob_dir())
            .field("keys", &self.keys)
            .field(
                "processes",
                &self
                    .processes
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("dev", &self.dev)
            .field("upload_ttl", &self.upload_ttl)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .field("body_min_rate", &self.body_min_rate)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("registration", &self.registration)
            .field("commit_refusals", &self.commit_refusals)
            .field("commit_refusal_window", &self.commit_refusal_window)
            .field("chaos", &self.chaos.is_some())
            .finish_non_exhaustive()
    }
}

/// The routes a [`Chaos`] hook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Register,
    Activate,
    Processes,
    UploadOptions,
    UploadCreate,
    UploadHead,
    UploadPatch,
    UploadDelete,
    Commit,
    Dev,
}

/// What a [`Chaos`] hook makes the endpoint answer instead of handling the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// Answer this status (with an `ErrorBody`: 429 → `rate_limited`, 503 → `unavailable`,
    /// anything else → `other`) and `Retry-After` when given; do nothing else.
    Status {
        status: u16,
        retry_after_secs: Option<u32>,
    },
}

/// A fault hook: consulted before every routed request with the route and, when the request
/// carries a valid token, the device id.
pub trait Chaos: Send + Sync {
    fn before(&self, route: Route, device_id: Option<&str>) -> Option<Injected>;

    /// Called on a commit's content phase, on its blocking thread and outside the database
    /// (ADR 0020), once the first part has been read and before the others are: a test may
    /// block here to hold the phase open and show that other requests still go through.
    fn commit_reading(&self, _device_id: &str) {}
}
