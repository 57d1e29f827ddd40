//! One simulated device: capture its plan (idempotently: a restarted device process finds what
//! it already captured through the store's own duplicate check), then sync through its link
//! until drained. The same code runs in a thread (default) or in its own process
//! (`--kill-rate`, `apoyo fieldtest-device`), which is SIGKILLed and restarted at random.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::sync::{
    self, BackoffPolicy, HttpTransport, StopReason, SyncOptions, TlsConfig,
};
use apoyo_sync::{Error, FileKeyGuard, Process};

use super::FieldError;
use super::marks::{MarkControl, Recorder, RecordingTransport};
use super::plan::{self, DevicePlan};

/// File names inside a device's folder.
pub const STORE: &str = "store";
pub const KEYRING: &str = "keyring";
pub const PLAN: &str = "plan.json";
pub const JOURNAL: &str = "journal.txt";

/// The longest single sync run (the deadline is checked between runs).
const MAX_RUN: Duration = Duration::from_secs(30);

/// What a device did, updated live (threads) or from its process's progress lines.
#[derive(Debug, Default)]
pub struct Live {
    pub captured: AtomicU64,
    pub refused: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub retries: AtomicU64,
    pub runs: AtomicU64,
    pub kills: AtomicU64,
    pub drained: AtomicBool,
    /// Milliseconds from the run's start to the moment this device drained.
    pub drained_at_ms: AtomicU64,
}

/// One journal line per planned capture: its id once durable, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Captured(String),
    Refused(String),
}

/// The device's journal: which planned capture became which capture id. A capture whose line
/// a kill prevented is found again at restart (the store answers `Duplicate` with its id).
pub struct Journal {
    path: PathBuf,
    pub entries: BTreeMap<usize, Entry>,
}

impl Journal {
    pub fn load(dir: &Path) -> Result<Journal, FieldError> {
        let path = dir.join(JOURNAL);
        let mut entries = BTreeMap::new();
        if let Ok(f) = std::fs::File::open(&path) {
            for line in std::io::BufReader::new(f).lines() {
                let line = line.map_err(|e| FieldError::io("journal", e))?;
                let mut w = line.split_whitespace();
                let (Some(i), Some(what), Some(v)) = (w.next(), w.next(), w.next()) else {
                    continue; // a line torn by a kill
                };
                let Ok(i) = i.parse() else { continue };
                let e = match what {
                    "captured" => Entry::Captured(v.to_string()),
                    _ => Entry::Refused(v.to_string()),
                };
                entries.insert(i, e);
            }
        }
        Ok(Journal { path, entries })
    }

    fn record(&mut self, index: usize, e: Entry) -> Result<(), FieldError> {
        let line = match &e {
            Entry::Captured(id) => format!("{index} captured {id}\n"),
            Entry::Refused(code) => format!("{index} refused {code}\n"),
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|er| FieldError::io("journal", er))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|er| FieldError::io("journal", er))?;
        self.entries.insert(index, e);
        Ok(())
    }
}

/// Opens a device's store (created and activated by the orchestrator).
pub fn open_store(dir: &Path) -> Result<Store, FieldError> {
    let guard = FileKeyGuard::open_or_create(&dir.join(KEYRING))?;
    Ok(Store::open(
        &dir.join(STORE),
        &guard,
        StoreOptions {
            disk_reserve_bytes: 0,
            ..Default::default()
        },
    )?)
}

/// Captures every planned entry not yet in the journal.
pub fn capture_all(
    store: &mut Store,
    plan: &DevicePlan,
    journal: &mut Journal,
    live: &Live,
) -> Result<(), FieldError> {
    let endpoint = Process::parse_json_list(plan::PROCESSES_JSON)?;
    let catalog = plan::device_catalog(&endpoint)?;
    for p in &plan.captures {
        if journal.entries.contains_key(&p.index) {
            continue;
        }
        // A sync run refreshed the catalog from the endpoint; the device's view is wider.
        store.put_processes(&catalog)?;
        let entry = match store.capture(plan::capture(plan, p)?) {
            Ok(id) => Entry::Captured(id.to_string()),
            Err(Error::Duplicate { earlier, .. }) => Entry::Captured(earlier),
            Err(e) if matches!(e.class(), apoyo_sync::ErrorClass::InvalidInput) => {
                Entry::Refused(format!("{:?}", e.code()).to_lowercase())
            }
            Err(e) => return Err(e.into()),
        };
        journal.record(p.index, entry)?;
    }
    let (c, r) = journal.entries.values().fold((0, 0), |(c, r), e| match e {
        Entry::Captured(_) => (c + 1, r),
        Entry::Refused(_) => (c, r + 1),
    });
    live.captured.store(c, Ordering::Relaxed);
    live.refused.store(r, Ordering::Relaxed);
    Ok(())
}

/// How a device syncs.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    /// The proxy's URL for this device's link.
    pub url: String,
    pub backoff: BackoffPolicy,
    pub seed: u64,
    pub deadline: Instant,
    /// When the run started (for `drained_at_ms`).
    pub start: Instant,
    /// Where the device's per-attempt marks go (the report's timeline).
    pub marks: Arc<Recorder>,
}

/// Syncs until nothing is pending, the deadline passes, or `stop` is set. `Ok(true)` when
/// drained. `after_run` is called after every sync run.
pub fn sync_until_drained(
    store: &mut Store,
    sp: &SyncPlan,
    live: &Live,
    stop: &AtomicBool,
    mut after_run: impl FnMut(&Live),
) -> Result<bool, FieldError> {
    // Each exchange is marked at the transport seam, each capture's outcome from the engine's
    // state-change events (see `marks`).
    let transport = RecordingTransport::new(
        HttpTransport::new(&sp.url, &TlsConfig::default())?,
        sp.marks.clone(),
    );
    let control: Arc<dyn sync::RunControl> = MarkControl::new(sp.marks.clone());
    let sent_before = live.sent_bytes.load(Ordering::Relaxed);
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || now >= sp.deadline {
            return Ok(false);
        }
        let runs = live.runs.fetch_add(1, Ordering::Relaxed);
        let opts = SyncOptions {
            budget: (sp.deadline - now).min(MAX_RUN),
            backoff: sp.backoff,
            seed: Some(crate::schedule::derive(sp.seed, 0, runs, 7)),
            progress: None,
            control: Some(control.clone()),
        };
        let r = sync::sync_blocking(store, &transport, opts)?;
        sent += r.bytes_sent;
        live.sent_bytes.store(sent_before + sent, Ordering::Relaxed);
        live.retries.fetch_add(r.retries, Ordering::Relaxed);
        if r.pending == 0 {
            live.drained_at_ms
                .store(sp.start.elapsed().as_millis() as u64, Ordering::Relaxed);
            live.drained.store(true, Ordering::Relaxed);
            after_run(live);
            return Ok(true);
        }
        after_run(live);
        if r.stopped == StopReason::NeedsActivation {
            return Err(FieldError::Setup("a device lost its activation".into()));
        }
    }
}

/// `apoyo fieldtest-device`: one device as its own process. Prints one `progress` line after
/// each step (`progress captured refused sent_bytes retries runs drained`), and exits 0 when
/// drained (1 at the deadline).
pub fn child_main(dir: &Path, url: &str, deadline: Duration) -> Result<bool, FieldError> {
    let start = Instant::now();
    let plan: DevicePlan = serde_json::from_slice(
        &std::fs::read(dir.join(PLAN)).map_err(|e| FieldError::io("plan", e))?,
    )
    .map_err(|e| FieldError::Setup(format!("plan: {e}")))?;
    let mut store = open_store(dir)?;
    let mut journal = Journal::load(dir)?;
    let live = Live::default();
    capture_all(&mut store, &plan, &mut journal, &live)?;
    let print = |l: &Live| {
        println!(
            "progress {} {} {} {} {} {}",
            l.captured.load(Ordering::Relaxed),
            l.refused.load(Ordering::Relaxed),
            l.sent_bytes.load(Ordering::Relaxed),
            l.retries.load(Ordering::Relaxed),
            l.runs.load(Ordering::Relaxed),
            l.drained.load(Ordering::Relaxed) as u8,
        );
        let _ = std::io::stdout().flush();
    };
    print(&live);
    let sp = SyncPlan {
        url: url.to_string(),
        backoff: super::field_backoff(),
        seed: crate::schedule::derive(plan.seed, plan.device as u64, 0, 8),
        deadline: start + deadline,
        start,
        marks: Recorder::open(dir)?,
    };
    sync_until_drained(&mut store, &sp, &live, &AtomicBool::new(false), print)
}
