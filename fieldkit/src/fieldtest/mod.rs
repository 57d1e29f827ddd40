//! `apoyo fieldtest`: a whole field scenario on one machine. An endpoint (in-process, or an
//! external one whose database we can read), the proxy (one link per device, or one shared
//! cell), D simulated devices each capturing C supports and syncing over the chosen profile,
//! optionally as processes SIGKILLed and restarted at random; then a report computed from what
//! the device stores and the endpoint's database actually hold.
//!
//! - `plan`: what each device captures; `device`: one device (thread or process);
//! - `setup`: endpoint, links, device stores; `run`: the sync phase and its live progress;
//! - `marks`: each device's per-attempt marks (exchanges and the engine's decisions);
//! - `account`: the figures; `html`: the self-contained HTML report.

pub mod account;
pub mod device;
pub mod html;
pub mod marks;
pub mod plan;
pub mod run;
pub mod setup;

use std::path::PathBuf;
use std::time::Duration;

use apoyo_sync::EndpointPublicKey;
use apoyo_sync::testkit::sync::BackoffPolicy;

pub use account::Report;
pub use run::{Outcome, Snapshot, run};

use crate::profile::Profile;

/// Errors of a field test run (never the figures: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
    #[error(transparent)]
    Engine(#[from] apoyo_sync::Error),
}

impl FieldError {
    pub(crate) fn io(what: &str, e: impl std::fmt::Display) -> FieldError {
        FieldError::Io {
            what: what.to_string(),
            detail: e.to_string(),
        }
    }
}

/// An endpoint run elsewhere (e.g. `apoyo serve --dev`): its URL, its public key, and its
/// database file, which the report reads (read-only) to count what it holds.
#[derive(Debug, Clone)]
pub struct External {
    pub url: String,
    pub public: EndpointPublicKey,
    /// Protocol v1.1: the INE root certifying the endpoint's keys. `None`: the devices trust no
    /// receipt and delete nothing (their supports stay queued).
    pub ine_root: Option<apoyo_sync::IneRoot>,
    pub db: PathBuf,
}

/// A field test's settings.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    pub devices: usize,
    pub captures: usize,
    pub profile: Profile,
    pub seed: u64,
    /// Synthetic capture size (images), bytes.
    pub capture_bytes: usize,
    /// One link (cell) for all devices instead of one each.
    pub shared_link: bool,
    /// SIGKILLs per device per minute, on average (devices run as processes).
    pub kill_rate: Option<f64>,
    pub deadline: Duration,
    pub endpoint: Option<External>,
    /// Plain-HTTP mode of the proxy (its own 429/503 answers).
    pub http_mode: bool,
    /// The `apoyo` binary, for device processes (`--kill-rate`).
    pub device_exe: Option<PathBuf>,
    /// Where stores, journals and the endpoint database go.
    pub work_dir: PathBuf,
    pub backoff: BackoffPolicy,
    /// The command line, printed in the report so the run can be replayed.
    pub command: String,
}

/// A run's verdict, from what its report counted (the exit code of `apoyo fieldtest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every support counted exactly once, none lost.
    Ok,
    /// Supports still pending at the deadline (on the phones: not lost).
    Pending,
    /// A support lost, or a citizen counted twice.
    LostOrCountedTwice,
}

impl Report {
    pub fn verdict(&self) -> Verdict {
        if self.lost > 0 || self.double_counted > 0 {
            Verdict::LostOrCountedTwice
        } else if self.pending > 0 {
            Verdict::Pending
        } else {
            Verdict::Ok
        }
    }
}

/// A field tester's retry policy: 1 s to 30 s (a phone's default is 2 s to 5 min, which would
/// make a short field run mostly waiting).
pub fn field_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
    }
}
