//! The suites' shared harness: the part files' fault layer over a [`Disk`], power switched on
//! for a folder (its SQLite files through the VFS shim, its part files through the layer),
//! seeds and crash points from the environment, folder copies, and integrity checks.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::{fs, io};

use apoyo_powerloss::{Disk, Losses, Tracked, track};
use apoyo_sync::testkit::model::{CardFields, CredentialModel, Images, NewCapture};
use apoyo_sync::testkit::store::part_fs::{self, Installed, PartFs};

/// The part files' fault layer: each operation is told to the disk first (which refuses it
/// once the power is lost), then done for real. Syncs are not passed to the real disk: the
/// [`Disk`] decides what survives.
pub struct FaultFs(pub Arc<Disk>);

impl PartFs for FaultFs {
    fn create_new(&self, path: &Path) -> io::Result<fs::File> {
        self.0.open(path, true)?;
        part_fs::RealFs.create_new(path)
    }
    fn write_at(&self, file: &fs::File, path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write(path, offset, buf)?;
        part_fs::RealFs.write_at(file, path, buf, offset)
    }
    fn sync_data(&self, _file: &fs::File, path: &Path) -> io::Result<()> {
        self.0.sync_file(path, false)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove(path)?;
        part_fs::RealFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)?;
        part_fs::RealFs.rename(from, to)
    }
}

/// The power of one folder: on from [`Power::on`], lost at the chosen sync point or at
/// [`Power::cut`].
pub struct Power {
    pub disk: Arc<Disk>,
    _vfs: Tracked,
    _parts: Installed,
}

impl Power {
    pub fn on(root: &Path, seed: u64, crash_at: Option<u64>) -> Power {
        let disk = Arc::new(Disk::new(root, seed, crash_at));
        let layer: Arc<dyn PartFs> = Arc::new(FaultFs(disk.clone()));
        Power {
            _vfs: track(disk.clone()),
            _parts: part_fs::install(root, layer),
            disk,
        }
    }

    /// The power is lost (if the chosen sync point did not already cut it): the folder's
    /// files are left as the power loss leaves them, and no longer tracked. Call once the
    /// process using them is gone.
    pub fn cut(self) -> Losses {
        self.disk.power_loss().expect("applying the power loss")
    }
}

/// Seeds to run: `APOYO_POWERLOSS_SEEDS` (default 20), or the one in `APOYO_POWERLOSS_SEED`.
pub fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("APOYO_POWERLOSS_SEED") {
        return vec![seed];
    }
    (0..env_u64("APOYO_POWERLOSS_SEEDS").unwrap_or(20)).collect()
}

/// Crash points to run out of `1..=last`: all, or the one in `APOYO_POWERLOSS_POINT`.
pub fn points(last: u64) -> Vec<u64> {
    match env_u64("APOYO_POWERLOSS_POINT") {
        Some(p) => vec![p],
        None => RangeInclusive::new(1, last).collect(),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

/// The fates' seed for one run.
pub fn fate_seed(seed: u64, point: u64) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(point)
}

/// The command that replays one run.
pub fn replay(test: &str, seed: u64, point: u64) -> String {
    format!(
        "APOYO_POWERLOSS_SEED={seed} APOYO_POWERLOSS_POINT={point} cargo test -p apoyo-powerloss --test powerloss {test} -- --nocapture"
    )
}

/// A fresh temporary folder, by its canonical path (SQLite names files by theirs).
pub fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = fs::canonicalize(dir.path()).expect("canonical temp dir");
    (dir, root)
}

/// Replaces `to` with a copy of `from` (files and folders).
pub fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        fs::remove_dir_all(to).expect("clear the run folder");
    }
    fs::create_dir_all(to).expect("run folder");
    for entry in fs::read_dir(from).expect("read template") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `PRAGMA integrity_check` of the database at `path`, through a fresh connection.
pub fn integrity(path: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .expect("open for the integrity check");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// Random bytes of `len` framed as a JPEG (magic and end marker).
pub fn jpeg(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    apoyo_sync::testkit::crypto::fill_random(&mut v).expect("random");
    v[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    v[len - 2..].copy_from_slice(&[0xFF, 0xD9]);
    v
}

/// Random bytes of `len` framed as a PNG.
pub fn png(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    apoyo_sync::testkit::crypto::fill_random(&mut v).expect("random");
    v[..8].copy_from_slice(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
    v
}

/// A well-formed clave de elector, distinct for each `i` below 26^6.
pub fn clave(i: u32) -> String {
    let mut n = i;
    let mut letters = [b'A'; 6];
    for l in letters.iter_mut().rev() {
        *l = b'A' + (n % 26) as u8;
        n /= 26;
    }
    let letters = std::str::from_utf8(&letters).expect("ascii");
    format!("{letters}850615{:02}M{:03}", 1 + i % 32, i % 1000)
}

/// A capture of citizen `i` for `process`, with small images (a few sectors to a few blocks).
pub fn capture(process: &str, i: u32) -> NewCapture {
    NewCapture {
        process_id: process.into(),
        model: CredentialModel::parse("G").expect("model"),
        fields: CardFields {
            clave_elector: clave(i),
            ..Default::default()
        },
        location: None,
        images: Images {
            front: jpeg(3_000),
            back: jpeg(2_500),
            selfie: jpeg(70_000),
            signature: png(700),
        },
        collector: None,
    }
}
