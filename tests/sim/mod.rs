//! Deterministic simulation of the sync protocol (issue 14, first part): a seeded world of
//! devices (real stores), the real endpoint in-process (its real SQLite) and a faulty network,
//! on a virtual clock, single-threaded, so one seed always plays the same schedule and a
//! thousand seeds run in seconds.
//!
//! - `world`: building and running one seed's world, and the state the network shares;
//! - `net`: the simulated network (the `Transport` the devices sync through);
//! - `endpoint`: the endpoint behind it (router via tower `oneshot`, restarts, chaos hook);
//! - `device`: a phone (store, captures, sync runs, crashes and restarts);
//! - `check`: the promises checked at the end of each seed.

pub mod check;
pub mod device;
pub mod endpoint;
pub mod net;
pub mod world;

use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;

/// Where every world's clock starts.
pub const START: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

/// The knobs of a world (the defaults are what `cargo test` runs).
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Steps of the schedule before healing.
    pub steps: u32,
    /// Devices: 1 to this many.
    pub max_devices: usize,
    /// Share of requests that meet a fault.
    pub fault_rate: f64,
    /// Whether the device may crash (in flight, and between a receipt and its purge).
    pub crashes: bool,
    /// Chance of a crash right after each recorded receipt.
    pub crash_rate: f64,
    /// The endpoint's tus upload lifetime (short, so hours offline expire uploads).
    pub upload_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            steps: 10,
            max_devices: 3,
            fault_rate: 0.3,
            crashes: true,
            crash_rate: 0.15,
            upload_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// What one seed did and whether it kept every promise.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
    pub captures: usize,
    pub crashes: u32,
    pub endpoint_restarts: u32,
}

/// A fresh folder for one world: in `/dev/shm` when there is one (fsync is free there; this
/// suite is about the protocol under faults, durability under power loss is another suite).
fn world_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("apoyo-sim-")
        .tempdir_in(shm);
    match builder {
        Ok(d) => d,
        Err(_) => tempfile::Builder::new()
            .prefix("apoyo-sim-")
            .tempdir()
            .expect("temp dir"),
    }
}

/// Runs one seed in a fresh folder.
pub fn run_seed(seed: u64, cfg: Config) -> Outcome {
    let dir = world_dir();
    world::run(seed, cfg, dir.path())
}

/// The command that replays `seed` exactly (with `bug` switched on, if any).
pub fn replay_command(seed: u64, bug: Option<&str>) -> String {
    let bug = bug.map_or(String::new(), |b| format!("APOYO_SIM_BUG={b} "));
    format!(
        "{bug}APOYO_SIM_SEED={seed} cargo test --test simulation replay_one_seed -- --nocapture"
    )
}
