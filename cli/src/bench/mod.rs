//! `apoyo bench [--json] [--quick]`: the performance figures of issue 16, each beside a
//! baseline measured in the same run, and their ratio (docs/performance.md has the table, the
//! machine and how to rerun).
//!
//! - `local`: capture commit vs raw write+fsync, sealing vs the bare AEAD;
//! - `sync`: `apoyo sync` vs durable plain POSTs, endpoint ingest (8 devices) vs raw fdatasync;
//! - `link`: wire bytes per payload byte with cut connections, goodput through link profiles;
//! - `queue`: queue operations with 100,000 rows vs 1,000 (clean close and after a SIGKILL);
//! - `rss`: peak RSS of a device process syncing 1,000 queued captures vs 100.
//!
//! `--quick` runs every measurement on tiny sizes (seconds, for the CI check that every key is
//! reported and finite); its figures are not meaningful. The scratch folder is `--dir` (default:
//! the system temp folder): put it on the disk whose fsync cost you want measured.

mod fixture;
mod link;
mod local;
mod queue;
mod rss;
mod sync;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

pub use queue::{HoldArgs, hold};
pub use rss::{ChildArgs, child};

use crate::{CliError, CliResult};

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Tiny sizes: checks that every figure is produced (figures not meaningful).
    #[arg(long)]
    quick: bool,
    /// Scratch folder (default: the system temp folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only the figures whose key contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Keep each step's scratch folder (stores, endpoint, the devices' `marks.jsonl` timelines)
    /// instead of removing it; their paths are printed on standard error.
    #[arg(long)]
    keep: bool,
}

/// One figure: the candidate, its baseline from the same run, and `value`, the key's ratio
/// (or, for the RSS keys, megabytes).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub value: f64,
    pub candidate: f64,
    pub baseline: f64,
    pub unit: String,
    pub goal: String,
    pub met: bool,
    pub what: String,
}

/// The figures collected so far, by key.
#[derive(Default)]
pub struct Figures {
    pub map: BTreeMap<String, Figure>,
}

/// How a goal reads and is checked.
#[derive(Clone, Copy)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Figures {
    /// Records `key` = `value` (a ratio of `candidate` over `baseline`, or a plain figure).
    pub fn put(
        &mut self,
        key: &str,
        value: f64,
        cb: (f64, f64),
        unit: &str,
        goal: Goal,
        what: &str,
    ) {
        let value = finite(value);
        let (goal, met) = match goal {
            Goal::AtMost(g) => (format!("<= {g}"), value <= g),
            Goal::AtLeast(g) => (format!(">= {g}"), value >= g),
            Goal::None => ("(informative)".to_string(), true),
        };
        self.map.insert(
            key.to_string(),
            Figure {
                value,
                candidate: finite(cb.0),
                baseline: finite(cb.1),
                unit: unit.to_string(),
                goal,
                met,
                what: what.to_string(),
            },
        );
    }
}

/// A figure JSON can carry: NaN and infinities (an empty measurement) become 0.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { finite(a / b) } else { 0.0 }
}

/// The median of `v` (0 when empty).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What a bench step needs: the mode and a scratch folder.
pub struct Ctx {
    pub quick: bool,
    pub root: PathBuf,
    pub exe: PathBuf,
    /// `--keep`: scratch folders outlive the run.
    pub keep: bool,
}

impl Ctx {
    /// A fresh scratch folder for one step (removed when dropped, unless `--keep`).
    pub fn scratch(&self, name: &str) -> CliResult<tempfile::TempDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("apoyo-bench-{name}-"))
            .disable_cleanup(self.keep)
            .tempdir_in(&self.root)
            .map_err(|e| CliError::Io(format!("bench scratch folder: {e}")))?;
        if self.keep {
            eprintln!("kept: {}", dir.path().display());
        }
        Ok(dir)
    }

    /// `full` normally, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

type Step = (&'static str, fn(&Ctx, &mut Figures) -> CliResult);

const STEPS: &[Step] = &[
    ("seal_vs_bare_aead", local::seal),
    (
        "capture_commit_vs_raw_fsync sync_vs_durable_post",
        sync::sync_vs_post,
    ),
    ("endpoint_ingest_vs_raw_fsync", sync::ingest),
    ("queue_op", queue::queue_ops),
    ("peak_rss", rss::peak_rss),
    ("wire_bytes_per_payload", link::wire_bytes),
    ("goodput_vs_link", link::goodput),
    ("acked_bytes_min_per_30s_run_2g_rural", link::rural_runs),
];

/// `apoyo bench`.
pub fn bench(a: BenchArgs) -> CliResult {
    let exe = std::env::current_exe().map_err(|e| CliError::Io(format!("own path: {e}")))?;
    let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&root).map_err(|e| CliError::Io(format!("--dir: {e}")))?;
    let ctx = Ctx {
        quick: a.quick,
        root,
        exe,
        keep: a.keep,
    };
    let mut figs = Figures::default();
    let t0 = Instant::now();
    for (keys, step) in STEPS {
        if a.only.as_deref().is_some_and(|o| !keys.contains(o)) {
            continue;
        }
        let t = Instant::now();
        step(&ctx, &mut figs)?;
        if !a.json {
            eprintln!(
                "apoyo bench: {keys} done in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    let machine = machine();
    if a.json {
        let out = serde_json::json!({
            "quick": a.quick,
            "machine": machine,
            "scratch": ctx.root.display().to_string(),
            "seconds": t0.elapsed().as_secs_f64(),
            "figures": figs.map,
        });
        println!("{out}");
    } else {
        print_table(&figs, &machine, a.quick);
    }
    Ok(())
}

fn print_table(figs: &Figures, machine: &BTreeMap<&str, String>, quick: bool) {
    let mut out = String::new();
    if quick {
        out.push_str("QUICK MODE: tiny sizes, figures not meaningful\n");
    }
    for (k, v) in machine {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push_str(&format!(
        "{:<44} {:>10} {:>14} {:>14} {:>8} {:>9}  {}\n",
        "key", "value", "candidate", "baseline", "goal", "", "unit"
    ));
    for (k, f) in &figs.map {
        out.push_str(&format!(
            "{k:<44} {:>10.3} {:>14.3} {:>14.3} {:>8} {:>9}  {}\n",
            f.value,
            f.candidate,
            f.baseline,
            f.goal,
            if f.met { "met" } else { "NOT MET" },
            f.unit
        ));
    }
    print!("{out}");
}

/// The machine the figures come from (CPU model and count, memory, architecture).
fn machine() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Hardware"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    m.insert("cpu", model);
    m.insert(
        "cpus",
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string(),
    );
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("unknown".into(), |kb| format!("{} MB", kb / 1024));
    m.insert("memory", mem);
    m.insert("arch", std::env::consts::ARCH.to_string());
    m.insert(
        "build",
        if cfg!(debug_assertions) {
            "debug (figures not representative)"
        } else {
            "release"
        }
        .to_string(),
    );
    m
}
