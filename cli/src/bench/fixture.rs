//! The bench's test bed, built from the field kit: an in-process endpoint (fresh SQLite
//! database and blob folder in the scratch folder), device stores registered and activated
//! with it, synthetic captures (no personal data) of a chosen size, and a raw durable write of
//! a given number of bytes (the baselines' unit of work).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use apoyo_fieldkit::fieldtest::plan::{self, Kind};
use apoyo_fieldkit::fieldtest::setup::{self, Device, Endpoint};
use apoyo_fieldkit::fieldtest::{FieldConfig, device};
use apoyo_fieldkit::profile::Profile;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::sync::BackoffPolicy;
use apoyo_sync::{CaptureId, Error, ErrorClass, Process};

use crate::{CliError, CliResult};

/// A field configuration for the bench (the field kit's settings; no device processes).
pub fn field_config(
    work: &Path,
    profile: Profile,
    devices: usize,
    captures: usize,
    capture_bytes: usize,
    deadline: Duration,
) -> FieldConfig {
    FieldConfig {
        devices,
        captures,
        profile,
        seed: 16,
        capture_bytes,
        shared_link: false,
        kill_rate: None,
        deadline,
        endpoint: None,
        http_mode: false,
        device_exe: None,
        work_dir: work.to_path_buf(),
        backoff: fast_backoff(),
        command: "apoyo bench".into(),
    }
}

/// Retries within tens of milliseconds: the bench measures the transfer, not the waiting.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    }
}

/// An endpoint and devices ready to capture and sync.
pub struct Rig {
    pub rt: tokio::runtime::Runtime,
    pub ep: Endpoint,
    pub devices: Vec<Device>,
}

pub fn fail(step: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Io(format!("bench {step}: {e}"))
}

impl Rig {
    /// Starts the endpoint and makes `devices` device stores whose plans hold `captures`
    /// captures of about `bytes` bytes each.
    pub fn new(work: &Path, devices: usize, captures: usize, bytes: usize) -> CliResult<Rig> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail("runtime", e))?;
        let cfg = field_config(
            work,
            Profile::passthrough("none", "bench"),
            devices,
            captures,
            bytes,
            Duration::from_secs(3600),
        );
        let ep = rt
            .block_on(setup::endpoint(&cfg))
            .map_err(|e| fail("endpoint", e))?;
        let devices = setup::devices(&cfg, &ep, &rt).map_err(|e| fail("devices", e))?;
        Ok(Rig { rt, ep, devices })
    }

    /// Stops the endpoint.
    pub fn stop(self) {
        let Rig { rt, ep, .. } = self;
        if let Some(e) = ep.running {
            rt.block_on(e.shutdown());
        }
    }
}

/// Opens a device's store.
pub fn open(d: &Device) -> CliResult<Store> {
    device::open_store(&d.dir).map_err(|e| fail("open store", e))
}

/// Captures the device's planned captures that the device itself accepts (the field plan's
/// locally refused ones are skipped; `range` picks among the rest), calling `each` with the id, the time the capture took
/// and its part file's length.
pub fn capture_plan(
    store: &mut Store,
    d: &Device,
    range: std::ops::Range<usize>,
    mut each: impl FnMut(&CaptureId, Duration, u64) -> CliResult,
) -> CliResult<usize> {
    let endpoint = Process::parse_json_list(plan::PROCESSES_JSON)?;
    store.put_processes(&plan::device_catalog(&endpoint)?)?;
    let mut n = 0;
    let planned = d
        .plan
        .captures
        .iter()
        .filter(|p| p.kind != Kind::LocalInvalid);
    for p in planned.skip(range.start).take(range.len()) {
        let c = plan::capture(&d.plan, p)?;
        let t = Instant::now();
        let id = match store.capture(c) {
            Ok(id) => id,
            Err(Error::Duplicate { .. }) => continue,
            Err(e) if matches!(e.class(), ErrorClass::InvalidInput) => continue,
            Err(e) => return Err(e.into()),
        };
        let took = t.elapsed();
        let file = d
            .dir
            .join("store")
            .join("parts")
            .join(format!("{id}.parts"));
        let len = std::fs::metadata(&file)
            .map_err(|e| fail("part file", e))?
            .len();
        each(&id, took, len)?;
        n += 1;
    }
    Ok(n)
}

/// Writes `bytes` into a new file `dir/name`, fdatasyncs it and, with `dir_too`, fsyncs the
/// folder (a new file's directory entry is durable only then).
pub fn raw_durable_write(dir: &Path, name: &str, bytes: &[u8], dir_too: bool) -> CliResult {
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(name))?;
        f.write_all(bytes)?;
        f.sync_data()?;
        if dir_too {
            apoyo_sync::wire::fsync_dir(dir)?;
        }
        Ok(())
    };
    write().map_err(|e| fail("raw write", e))
}

/// `n` random bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}
