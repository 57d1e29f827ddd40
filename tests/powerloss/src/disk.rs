//! The simulated disk: what would survive a power loss of the files under one folder.
//!
//! Every write reaches the real file at once (so the process reads what it wrote, as from the
//! page cache), and is also held here as *pending* until a sync of that file makes it durable.
//! The folder entries (a file created or removed) are pending until a sync of their folder.
//! Every sync is a numbered *sync point*; at the chosen one the disk "loses power": that sync
//! fails, every later operation fails (the process is dead), and [`Disk::power_loss`] then
//! rewrites the real files to what survived — each pending write kept, dropped, torn (some of
//! its 512-byte sectors written) or replaced with garbage, each pending entry change kept or
//! undone — chosen by a seeded generator, so a seed and a sync point replay exactly.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a torn write is torn into.
pub const SECTOR: u64 = 512;

#[derive(Clone, Debug)]
enum Op {
    Write { at: u64, data: Vec<u8> },
    Truncate(u64),
}

/// One file as the disk knows it.
#[derive(Default)]
struct FileState {
    /// Its content as of its last sync (what it holds after a crash if its entry survives).
    durable: Vec<u8>,
    /// Whether its entry is durably in its folder.
    durable_exists: bool,
    /// Whether it exists now.
    exists: bool,
    /// Writes and truncations since its last sync, in order.
    pending: Vec<Op>,
}

/// What happened to the unsynced writes and entries at a power loss.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Losses {
    pub kept: u32,
    pub dropped: u32,
    pub torn: u32,
    pub garbage: u32,
    /// Entry changes (a creation or removal not yet synced in its folder) undone.
    pub entries_undone: u32,
}

impl Losses {
    /// Writes that did not reach the disk as written.
    pub fn damaged(&self) -> u32 {
        self.dropped + self.torn + self.garbage
    }
}

struct State {
    files: BTreeMap<PathBuf, FileState>,
    /// Sync points passed (or reached, for the crashing one).
    syncs: u64,
    /// What each sync point synced, in order (paths relative to the root).
    log: Vec<String>,
    crash_at: Option<u64>,
    crashed: bool,
    lost: bool,
}

/// The simulated disk under one folder.
pub struct Disk {
    root: PathBuf,
    seed: u64,
    state: Mutex<State>,
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: the device is off")
}

impl Disk {
    /// A disk for the files under `root` that loses power at sync point `crash_at` (1-based;
    /// `None`: only when [`Disk::power_loss`] is called), with fates drawn from `seed`.
    pub fn new(root: &Path, seed: u64, crash_at: Option<u64>) -> Disk {
        Disk {
            root: root.to_path_buf(),
            seed,
            state: Mutex::new(State {
                files: BTreeMap::new(),
                syncs: 0,
                log: Vec::new(),
                crash_at,
                crashed: false,
                lost: false,
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.root)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sync points passed so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// What each sync point synced.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Whether power is lost (at the chosen sync point, or by [`Disk::power_loss`]).
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    fn live(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let st = self.lock();
        if st.crashed { Err(dead()) } else { Ok(st) }
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Counts a sync point; the chosen one fails and cuts the power.
    fn sync_point(&self, st: &mut State, what: String) -> io::Result<()> {
        st.syncs += 1;
        st.log.push(what);
        if st.crash_at == Some(st.syncs) {
            st.crashed = true;
            return Err(dead());
        }
        Ok(())
    }

    /// `path` as it is on the real disk now, taken as durable (first time the disk sees it).
    fn known<'s>(st: &'s mut State, path: &Path) -> &'s mut FileState {
        st.files
            .entry(path.to_path_buf())
            .or_insert_with(|| match fs::read(path) {
                Ok(durable) => FileState {
                    durable,
                    durable_exists: true,
                    exists: true,
                    pending: Vec::new(),
                },
                Err(_) => FileState::default(),
            })
    }

    /// `path` is opened (and created if `create` and missing). Call before the real open.
    pub fn open(&self, path: &Path, create: bool) -> io::Result<()> {
        let mut st = self.live()?;
        let f = Self::known(&mut st, path);
        if create && !f.exists {
            f.exists = true;
            // A new file: whatever a removed one at this name held is not its content.
            f.pending.push(Op::Truncate(0));
        }
        Ok(())
    }

    pub fn write(&self, path: &Path, at: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.live()?;
        Self::known(&mut st, path).pending.push(Op::Write {
            at,
            data: data.to_vec(),
        });
        Ok(())
    }

    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.live()?;
        Self::known(&mut st, path).pending.push(Op::Truncate(len));
        Ok(())
    }

    /// A sync point: the file's pending writes become durable (and its entry, if `entry`:
    /// SQLite's VFS syncs the folder of a new journal or WAL with its first sync).
    pub fn sync_file(&self, path: &Path, entry: bool) -> io::Result<()> {
        let mut st = self.live()?;
        let what = format!("sync {}", self.rel(path));
        self.sync_point(&mut st, what)?;
        let f = Self::known(&mut st, path);
        let mut data = std::mem::take(&mut f.durable);
        for op in f.pending.drain(..) {
            apply(&mut data, &op);
        }
        f.durable = data;
        if entry {
            f.durable_exists = f.exists;
        }
        Ok(())
    }

    /// A sync point: the entries of folder `dir` (files created or removed in it) become
    /// durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        let what = format!("sync dir {}/", self.rel(dir));
        self.sync_point(&mut st, what)?;
        for (path, f) in st.files.iter_mut() {
            if path.parent() == Some(dir) {
                f.durable_exists = f.exists;
            }
        }
        Ok(())
    }

    /// `path` is removed (pending until its folder is synced). Call before the real removal.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        Self::known(&mut st, path).exists = false;
        Ok(())
    }

    /// `from` is renamed to `to`. Modelled as durable at once (only recovery renames part
    /// files, and the suites never cut the power during recovery; ADR 0017).
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        Self::known(&mut st, from);
        let mut moved = st.files.remove(from).unwrap_or_default();
        for op in moved.pending.drain(..) {
            apply(&mut moved.durable, &op);
        }
        moved.durable_exists = true;
        moved.exists = true;
        st.files.insert(to.to_path_buf(), moved);
        Ok(())
    }

    /// Cuts the power now (if the chosen sync point did not), then rewrites every file the
    /// disk knows to what survived. Call once the process using the files is gone (its
    /// connections closed, its store dropped). Returns what was lost.
    pub fn power_loss(&self) -> io::Result<Losses> {
        let mut st = self.lock();
        st.crashed = true;
        if st.lost {
            return Ok(Losses::default());
        }
        st.lost = true;
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut losses = Losses::default();
        for (path, f) in st.files.iter_mut() {
            // An entry change not yet synced in its folder survives or is undone.
            let undone = f.exists != f.durable_exists && rng.bool();
            let exists = if undone {
                losses.entries_undone += 1;
                f.durable_exists
            } else {
                f.exists
            };
            let mut data = std::mem::take(&mut f.durable);
            for op in f.pending.drain(..) {
                fated(&mut data, op, &mut rng, &mut losses);
            }
            if exists {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                fs::write(path, &data)?;
            } else if path.exists() {
                fs::remove_file(path)?;
            }
            f.durable = data;
            f.durable_exists = exists;
            f.exists = exists;
        }
        Ok(losses)
    }
}

/// Applies `op` as it was issued.
fn apply(data: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { at, data: bytes } => put(data, *at, bytes),
        Op::Truncate(len) => data.truncate(*len as usize),
    }
}

fn put(data: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    let at = at as usize;
    if data.len() < at + bytes.len() {
        data.resize(at + bytes.len(), 0);
    }
    data[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Applies an unsynced `op` as a power loss leaves it: a write kept (8 in 20), dropped (6 in
/// 20), torn (3 in 20: each of its sectors written or not) or garbage (3 in 20: each of its
/// sectors random bytes); a truncation kept or not.
fn fated(data: &mut Vec<u8>, op: Op, rng: &mut fastrand::Rng, losses: &mut Losses) {
    let Op::Write { at, data: bytes } = op else {
        if rng.bool() {
            apply(data, &op);
        }
        return;
    };
    match rng.u8(0..20) {
        0..8 => {
            losses.kept += 1;
            put(data, at, &bytes);
        }
        8..14 => losses.dropped += 1,
        fate => {
            let garbage = fate >= 17;
            if garbage {
                losses.garbage += 1;
            } else {
                losses.torn += 1;
            }
            let mut pos = at;
            let end = at + bytes.len() as u64;
            while pos < end {
                let next = ((pos / SECTOR) + 1) * SECTOR;
                let piece = &bytes[(pos - at) as usize..(next.min(end) - at) as usize];
                if garbage {
                    let noise: Vec<u8> = (0..piece.len()).map(|_| rng.u8(..)).collect();
                    put(data, pos, &noise);
                } else if rng.bool() {
                    put(data, pos, piece);
                }
                pos = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synced_write_survives_and_an_unsynced_one_may_not() {
        let dir = tempfile_dir();
        let path = dir.join("f");
        fs::write(&path, b"").expect("create");
        // Across seeds, the unsynced write meets every fate; the synced one is always there.
        let mut seen = Losses::default();
        for seed in 0..200 {
            fs::write(&path, b"").expect("reset");
            let disk = Disk::new(&dir, seed, None);
            disk.open(&path, false).expect("open");
            disk.write(&path, 0, &[1; 1024]).expect("write");
            disk.sync_file(&path, false).expect("sync");
            disk.write(&path, 1024, &[2; 1024]).expect("write");
            let l = disk.power_loss().expect("power loss");
            let after = fs::read(&path).expect("read");
            assert_eq!(&after[..1024], &[1; 1024][..], "seed {seed}");
            seen.kept += l.kept;
            seen.dropped += l.dropped;
            seen.torn += l.torn;
            seen.garbage += l.garbage;
        }
        assert!(seen.kept > 0 && seen.dropped > 0 && seen.torn > 0 && seen.garbage > 0);
        fs::remove_dir_all(&dir).expect("clean");
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("powerloss-disk-{}", std::process::id()));
        fs::create_dir_all(&d).expect("dir");
        d
    }
}
