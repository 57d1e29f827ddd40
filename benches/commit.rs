//! Commit of a ≈2 MB capture vs writing and fsyncing the same bytes raw. Goal: ≤ 1.25×.
//!
//! Candidate: `Store::capture` of a capture with front 600 kB, back 600 kB, selfie 800 kB and
//! signature 40 kB (JPEG magic + random bytes), each with its own clave de elector so the
//! duplicate check lets it through. Baselines, on the same file system, writing exactly as many
//! bytes as the capture's part file holds, into a new file, with one `write_all`:
//!
//! - `raw file fsync`: write + fsync of the file only (not durable for a *new* file: its
//!   directory entry may be lost on power loss);
//! - `raw file+dir fsync`: write + fsync of the file + fsync of its directory — the honest raw
//!   durable write, and the baseline of the goal;
//! - `model file+dir+sqlite` (informative): the above plus one SQLite WAL commit of rows the
//!   size of the capture's, with `synchronous=NORMAL` as the store commits them (the part file
//!   is the durable record: ADR 0013) — the floor of the store's design (part file fsync,
//!   folder fsync, then the commit), without any crypto or validation.
//!
//! The variants run interleaved in the same process, one of each per round, their order rotated
//! every round so each occupies every position equally (drift and "who goes first" cancel). The
//! ratio is `median(capture) / median(raw file+dir fsync)`, with a bootstrap 95 % interval over
//! rounds. A hand-written harness rather than criterion: each sample is one fsync-bound
//! operation that leaves a new file behind, which criterion's batching does not model well.
//!
//! After the measured rounds, two informative CPU figures (no device I/O): `Store::capture` into
//! a second store on tmpfs (`/dev/shm`, when there is one) — the library's own work, sealing
//! and all — and the four images sealed serially to a sink by `PartSealer`. Capture on disk
//! minus capture on tmpfs is the device time the capture could not hide behind its CPU work.
//!
//! Modes: `cargo bench --bench commit` runs the full measurement (`APOYO_BENCH_ROUNDS`,
//! `APOYO_BENCH_WARMUP` override the counts). Without cargo bench's `--bench` argument (e.g.
//! `cargo test --benches`) or with `APOYO_BENCH_QUICK=1`, a smoke run of a few rounds checks
//! that everything works; its figures are not meaningful. `APOYO_BENCH_DIR` picks the parent
//! folder of the scratch directory (default: cargo's target tmp dir, on the real disk, not
//! tmpfs). `APOYO_BENCH_ENFORCE=1` makes a missed goal exit with status 1 (full mode only).

use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::PartSealer;
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::wire::fsync_dir;
use apoyo_sync::{
    CardFields, CredentialModel, FileKeyGuard, Images, NewCapture, PartKind, Process,
};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const GOAL: f64 = 1.25;
const FRONT: usize = 600_000;
const BACK: usize = 600_000;
const SELFIE: usize = 800_000;
const SIGNATURE: usize = 40_000;
const PROCESS_ID: &str = "bench-nacional";
const PROCESS_JSON: &str = r#"{"id":"bench-nacional","name":"Bench nacional","accepted_models":["G"],
    "vigencia_cutoff":"2022-01-01","scope":"national"}"#;

// ---- configuration and statistics: benches/common/mod.rs -----------------------------------

mod common;
use common::*;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---- file system ---------------------------------------------------------------------------

/// The mount holding `path`, from /proc/self/mountinfo: (mount point, fs type, source).
fn filesystem_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let unescape = |s: &str| -> String {
        // mountinfo escapes space, tab, newline and backslash as \ooo.
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut best: Option<(usize, (String, String, String))> = None;
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = pre.split(' ').nth(4) else {
            continue;
        };
        let mount = unescape(mount);
        let mut post = post.split(' ');
        let (Some(fstype), Some(source)) = (post.next(), post.next()) else {
            continue;
        };
        if path.starts_with(&mount) {
            let depth = Path::new(&mount).components().count();
            // `>=`: a later mount over the same point hides the earlier one.
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, (mount, fstype.to_string(), unescape(source))));
            }
        }
    }
    best.map(|(_, m)| m)
}

/// What decides the cost of an fsync on Linux: an ext4 journal (a file fsync then commits the
/// journal, which also carries the directory entry) and the device's volatile write cache (an
/// fsync then also sends a cache flush).
fn print_fs_details(fstype: &str, source: &str) {
    let Some(dev) = source.strip_prefix("/dev/") else {
        return;
    };
    if fstype == "ext4" {
        let journal = fs::read_dir("/proc/fs/jbd2")
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{dev}-"))
                })
            })
            .unwrap_or(false);
        println!(
            "            ext4 journal: {}",
            if journal {
                "yes (jbd2)"
            } else {
                "none (no /proc/fs/jbd2 entry): fsync writes data + inode, no journal commit"
            }
        );
    }
    // A partition's queue settings are its disk's: vda1 -> vda, nvme0n1p1 -> nvme0n1.
    let disk = fs::canonicalize(format!("/sys/class/block/{dev}"))
        .ok()
        .and_then(|p| {
            if p.join("partition").exists() {
                p.parent().map(Path::to_path_buf)
            } else {
                Some(p)
            }
        });
    if let Some(disk) = disk {
        let read =
            |f: &str| fs::read_to_string(disk.join("queue").join(f)).map(|s| s.trim().to_string());
        if let (Ok(wc), Ok(rot)) = (read("write_cache"), read("rotational")) {
            println!("            device write cache: {wc}; rotational: {rot}");
        }
    }
}

fn scratch_parent() -> PathBuf {
    if let Some(p) = std::env::var_os("APOYO_BENCH_DIR") {
        return PathBuf::from(p);
    }
    let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if fs::create_dir_all(&target_tmp).is_ok() {
        return target_tmp;
    }
    PathBuf::from("/var/tmp")
}

// ---- the workload --------------------------------------------------------------------------

fn jpeg(len: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    v
}

/// A valid clave de elector, distinct for each `n` (< 32 000 × 26²).
fn clave(n: usize) -> String {
    let letters = n / 32_000;
    let (a, b) = (
        b'A' + (letters / 26 % 26) as u8,
        b'A' + (letters % 26) as u8,
    );
    let entidad = 1 + (n / 1000) % 32;
    format!(
        "ABCD{}{}900101{entidad:02}H{:03}",
        a as char,
        b as char,
        n % 1000
    )
}

struct Workload {
    images: Images,
    model: CredentialModel,
    next: usize,
}

impl Workload {
    fn next_capture(&mut self) -> NewCapture {
        let fields = CardFields {
            clave_elector: clave(self.next),
            ..CardFields::default()
        };
        self.next += 1;
        NewCapture {
            process_id: PROCESS_ID.to_string(),
            model: self.model.clone(),
            fields,
            location: None,
            images: self.images.clone(),
            collector: None,
        }
    }
}

/// Writes `bytes` into a new file in `dir` and fsyncs it, and the folder if `dir_too`.
fn raw_write(dir: &Path, n: &mut usize, bytes: &[u8], dir_too: bool) -> std::io::Result<()> {
    *n += 1;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(format!("{n:06}.bin")))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if dir_too {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// The store design's floor without crypto: file + folder fsync, then one WAL commit of rows
/// the size of a capture's (1 capture row, 5 part rows, 1 key row) with `synchronous=NORMAL`,
/// as `Store::capture` commits them (ADR 0013).
struct SqliteModel {
    conn: rusqlite::Connection,
    dir: PathBuf,
    n: usize,
}

impl SqliteModel {
    fn new(dir: &Path) -> BoxResult<Self> {
        fs::create_dir_all(dir.join("parts"))?;
        let conn = rusqlite::Connection::open(dir.join("model.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE captures (id TEXT PRIMARY KEY, process_id TEXT, collector_id TEXT, captured_at TEXT,
                                    dup_key BLOB UNIQUE, state TEXT, total_bytes INTEGER, updated_at TEXT);
             CREATE TABLE parts (capture_id TEXT, kind TEXT, file_offset INTEGER, ct_len INTEGER, sha256 BLOB,
                                 PRIMARY KEY (capture_id, kind));
             CREATE TABLE capture_keys (capture_id TEXT PRIMARY KEY, device_wrap BLOB, endpoint_seal BLOB);",
        )?;
        Ok(SqliteModel {
            conn,
            dir: dir.to_path_buf(),
            n: 0,
        })
    }

    fn commit(&mut self, bytes: &[u8]) -> BoxResult<()> {
        let parts = self.dir.join("parts");
        raw_write(&parts, &mut self.n, bytes, true)?;
        self.commit_rows(bytes.len())
    }

    /// Only the SQLite transaction (WAL frames written, no flush).
    fn commit_rows(&mut self, total_bytes: usize) -> BoxResult<()> {
        self.n += 1;
        let id = format!("{:08x}-0000-7000-8000-{:012x}", self.n, self.n);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO captures VALUES (?1, ?2, ?3, ?4, ?5, 'captured', ?6, ?4)",
            rusqlite::params![
                id,
                PROCESS_ID,
                "device-0123456789abcdef",
                "2026-01-01T00:00:00Z",
                &(self.n as u64).to_be_bytes()[..],
                total_bytes as i64
            ],
        )?;
        for (k, kind) in ["front", "back", "selfie", "signature", "manifest"]
            .iter()
            .enumerate()
        {
            tx.execute(
                "INSERT INTO parts VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![id, kind, k as i64 * 600_000, 600_000i64, &[k as u8; 32][..]],
            )?;
        }
        tx.execute(
            "INSERT INTO capture_keys VALUES (?1, ?2, ?3)",
            rusqlite::params![id, &[1u8; 72][..], &[2u8; 120][..]],
        )?;
        tx.commit()?;
        Ok(())
    }
}

// ---- main ----------------------------------------------------------------------------------

const CAPTURE: usize = 0;
const RAW_FILE: usize = 1;
const RAW_FILE_DIR: usize = 2;
const MODEL: usize = 3;
const VARIANTS: usize = 4;
const NAMES: [&str; VARIANTS] = [
    "capture (Store::capture)",
    "raw write + fsync file",
    "raw write + fsync file + dir",
    "model: file+dir fsync + SQLite commit",
];

fn main() -> BoxResult<()> {
    let cfg = Config::from_env((5, 101));
    let parent = scratch_parent();
    let scratch = tempfile::Builder::new()
        .prefix("apoyo-bench-commit-")
        .tempdir_in(&parent)?;
    let root = scratch.path();

    println!("apoyo-sync bench: commit of a ≈2 MB capture vs raw write+fsync of the same bytes");
    println!(
        "mode: {} ({} warm-up rounds, {} measured rounds; one of each variant per round, order rotated)",
        if cfg.quick {
            "SMOKE (quick; figures not meaningful)"
        } else {
            "full"
        },
        cfg.warmup,
        cfg.rounds
    );
    match filesystem_of(root) {
        Some((mount, fstype, source)) => {
            println!(
                "filesystem: {} is on {fstype} ({source}, mounted at {mount})",
                root.display()
            );
            print_fs_details(&fstype, &source);
            if matches!(
                fstype.as_str(),
                "tmpfs" | "ramfs" | "devtmpfs" | "hugetlbfs"
            ) {
                println!(
                    "WARNING: {fstype} keeps data in memory; fsync is a no-op and the ratio means nothing."
                );
                println!("         Set APOYO_BENCH_DIR to a folder on a real disk.");
            }
        }
        None => println!(
            "filesystem: {} (type unknown: no /proc/self/mountinfo)",
            root.display()
        ),
    }

    // The store, its keyring outside it.
    let guard = FileKeyGuard::open_or_create(&root.join("keyring"))?;
    let endpoint = EndpointSecretKey::generate()?;
    let mut store = new_store(&root.join("store"), &guard, &endpoint)?;

    let mut rng = fastrand::Rng::with_seed(20260401);
    let mut work = Workload {
        images: Images {
            front: jpeg(FRONT, &mut rng),
            back: jpeg(BACK, &mut rng),
            selfie: jpeg(SELFIE, &mut rng),
            signature: jpeg(SIGNATURE, &mut rng),
        },
        model: CredentialModel::parse("G")?,
        next: 0,
    };

    // One capture first, to learn exactly how many bytes its part file holds.
    let probe = store.capture(work.next_capture())?;
    let ct_bytes = store.info(&probe)?.total_bytes as usize;
    let image_bytes = FRONT + BACK + SELFIE + SIGNATURE;
    println!(
        "bytes: images {image_bytes} B; capture part file {ct_bytes} B (+{} B version bytes, AEAD tags, manifest); \
         the baselines write {ct_bytes} B",
        ct_bytes - image_bytes
    );
    let mut raw_bytes = vec![0u8; ct_bytes];
    rng.fill(&mut raw_bytes);

    let raw_file_dir = root.join("raw-file");
    let raw_dir_dir = root.join("raw-file-dir");
    fs::create_dir_all(&raw_file_dir)?;
    fs::create_dir_all(&raw_dir_dir)?;
    fsync_dir(root)?;
    let mut model = SqliteModel::new(&root.join("model"))?;
    let (mut n_file, mut n_dir) = (0usize, 0usize);

    let mut run = |variant: usize, store: &mut Store, work: &mut Workload| -> BoxResult<Duration> {
        Ok(match variant {
            CAPTURE => {
                let c = work.next_capture(); // built (and its images copied) outside the timing
                let t = Instant::now();
                black_box(store.capture(c)?);
                let took = t.elapsed();
                // `capture` wipes the caller's images on a short-lived thread after it
                // returns; let that finish so it never runs during the next variant's timing.
                std::thread::sleep(Duration::from_millis(3));
                took
            }
            RAW_FILE => {
                let t = Instant::now();
                raw_write(&raw_file_dir, &mut n_file, &raw_bytes, false)?;
                t.elapsed()
            }
            RAW_FILE_DIR => {
                let t = Instant::now();
                raw_write(&raw_dir_dir, &mut n_dir, &raw_bytes, true)?;
                t.elapsed()
            }
            MODEL => {
                let t = Instant::now();
                model.commit(&raw_bytes)?;
                t.elapsed()
            }
            _ => unreachable!("no variant {variant}"),
        })
    };

    let mut samples: [Vec<f64>; VARIANTS] = Default::default();
    for round in 0..cfg.warmup + cfg.rounds {
        for k in 0..VARIANTS {
            let variant = (round + k) % VARIANTS;
            let d = run(variant, &mut store, &mut work)?;
            if round >= cfg.warmup {
                samples[variant].push(ms(d));
            }
        }
    }
    // (`run`'s borrows of the baselines end here.)

    let status = store.status()?;
    assert_eq!(
        status.captured as usize, work.next,
        "every capture must be in the queue"
    );

    // Informative: the CPU work, measured without device I/O.
    let cpu_reps = if cfg.quick { 1 } else { 21 };
    let tmpfs_capture_ms = capture_on_tmpfs(&guard, &endpoint, &mut work, cpu_reps)?;
    let mut seal_ms = Vec::new();
    let key = apoyo_sync::testkit::crypto::random_key()?;
    let mut buf = Vec::with_capacity(apoyo_sync::wire::limits::CHUNK_SIZE + 17);
    for _ in 0..cpu_reps {
        let t = Instant::now();
        for kind in [
            PartKind::Front,
            PartKind::Back,
            PartKind::Selfie,
            PartKind::Signature,
        ] {
            let img = work.images.get(kind).unwrap_or_default();
            PartSealer::new(&key, &[9; 16], kind)?.seal_with_buffer(
                black_box(img),
                &mut std::io::sink(),
                &mut buf,
            )?;
        }
        seal_ms.push(ms(t.elapsed()));
    }

    println!();
    println!(
        "{:<40} {:>10} {:>9} {:>9} {:>9} {:>5}",
        "variant", "median ms", "p25", "p75", "min", "n"
    );
    for (i, name) in NAMES.iter().enumerate() {
        let s = &samples[i];
        println!(
            "{name:<40} {:>10.2} {:>9.2} {:>9.2} {:>9.2} {:>5}",
            median(s),
            quantile(s, 0.25),
            quantile(s, 0.75),
            quantile(s, 0.0),
            s.len()
        );
    }
    match &tmpfs_capture_ms {
        Some(t) => println!(
            "{:<40} {:>10.2} {:>9.2} {:>9.2} {:>9.2} {:>5}   (no device I/O: the library's CPU work)",
            "cpu: Store::capture on tmpfs",
            median(t),
            quantile(t, 0.25),
            quantile(t, 0.75),
            quantile(t, 0.0),
            t.len()
        ),
        None => println!("cpu: Store::capture on tmpfs: skipped (no tmpfs at /dev/shm)"),
    }
    println!(
        "{:<40} {:>10.2} {:>9.2} {:>9.2} {:>9.2} {:>5}   (the 4 images sealed serially to a sink)",
        "cpu: PartSealer x4, one thread (2.04 MB)",
        median(&seal_ms),
        quantile(&seal_ms, 0.25),
        quantile(&seal_ms, 0.75),
        quantile(&seal_ms, 0.0),
        seal_ms.len()
    );
    let m = |i: usize| median(&samples[i]);
    println!();
    println!(
        "decomposition (medians): dir fsync adds {:+.2} ms over file-only; the SQLite commit adds {:+.2} ms over \
         file+dir; capture is {:+.2} ms over the model (crypto, validation, queries not hidden behind the I/O)",
        m(RAW_FILE_DIR) - m(RAW_FILE),
        m(MODEL) - m(RAW_FILE_DIR),
        m(CAPTURE) - m(MODEL)
    );
    if let Some(t) = &tmpfs_capture_ms {
        println!(
            "capture on disk is {:+.2} ms over capture on tmpfs (the device time it does not hide behind its CPU work)",
            m(CAPTURE) - median(t)
        );
    }

    let ratio = m(CAPTURE) / m(RAW_FILE_DIR);
    let ci = fmt_ci(
        bootstrap_ratio_ci(&samples[CAPTURE], &samples[RAW_FILE_DIR]),
        2,
    );
    let file_ci = fmt_ci(bootstrap_ratio_ci(&samples[CAPTURE], &samples[RAW_FILE]), 2);
    let paired: Vec<f64> = samples[CAPTURE]
        .iter()
        .zip(&samples[RAW_FILE_DIR])
        .map(|(a, b)| a / b)
        .collect();
    let met = ratio <= GOAL;
    println!();
    println!(
        "absolute medians: capture {:.2} ms, raw file fsync {:.2} ms, raw file+dir fsync {:.2} ms, model {:.2} ms",
        m(CAPTURE),
        m(RAW_FILE),
        m(RAW_FILE_DIR),
        m(MODEL),
    );
    println!(
        "RATIO commit_vs_raw_fsync_file_only = {:.2} (informative; {file_ci})",
        m(CAPTURE) / m(RAW_FILE)
    );
    println!(
        "RATIO commit_vs_model_sqlite = {:.2} (informative: capture vs the design's floor without crypto)",
        m(CAPTURE) / m(MODEL)
    );
    println!(
        "RATIO commit_vs_raw_fsync_paired_median = {:.2} (informative: median of per-round ratios)",
        median(&paired)
    );
    println!(
        "RATIO commit_vs_raw_fsync = {ratio:.2} (goal <= {GOAL}) {ci} => {}{}",
        if met { "MET" } else { "MISSED" },
        if cfg.quick {
            " [smoke run: not meaningful]"
        } else {
            ""
        }
    );
    drop(store);
    drop(model);
    if cfg.enforce && !cfg.quick && !met {
        std::process::exit(1);
    }
    Ok(())
}

/// A new store in `dir` (created), with the bench's process.
fn new_store(dir: &Path, guard: &FileKeyGuard, endpoint: &EndpointSecretKey) -> BoxResult<Store> {
    fs::create_dir_all(dir)?;
    let root = apoyo_sync::testkit::crypto::Ed25519Secret::generate()?;
    let provisioning = apoyo_sync::testkit::store::InePublicKeys {
        seal_key: endpoint.public(),
        ine_root: apoyo_sync::IneRoot::from_bytes(&root.public())?,
    };
    let mut store = Store::init(dir, guard, &provisioning, None, StoreOptions::default())?;
    store.put_processes(&Process::parse_json_list(PROCESS_JSON.as_bytes())?)?;
    Ok(store)
}

/// `reps` captures (after one warm-up) into a store on tmpfs, where fsync costs nothing: the
/// CPU cost of a capture. `None` if there is no tmpfs at /dev/shm.
fn capture_on_tmpfs(
    guard: &FileKeyGuard,
    endpoint: &EndpointSecretKey,
    work: &mut Workload,
    reps: usize,
) -> BoxResult<Option<Vec<f64>>> {
    let shm = Path::new("/dev/shm");
    if filesystem_of(shm).is_none_or(|(_, fstype, _)| fstype != "tmpfs") {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix("apoyo-bench-commit-cpu-")
        .tempdir_in(shm)?;
    let mut store = new_store(&dir.path().join("store"), guard, endpoint)?;
    let mut out = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let c = work.next_capture();
        let t = Instant::now();
        black_box(store.capture(c)?);
        if rep > 0 {
            out.push(ms(t.elapsed()));
        }
    }
    Ok(Some(out))
}
