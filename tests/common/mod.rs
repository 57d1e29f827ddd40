//! Shared helpers for the store integration tests: real stores in temporary folders, a
//! development keyring that is always explicit (never the developer's home), synthetic images
//! and claves, and file-level helpers (snapshots, byte flips, byte searches).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::{CardFields, CredentialModel, FileKeyGuard, Images, IneRoot, NewCapture, Process};

/// What a device is provisioned with for `endpoint`: its seal key and a fresh INE root.
pub fn provisioning_for(endpoint: &EndpointSecretKey) -> InePublicKeys {
    let root = Ed25519Secret::generate().expect("root");
    InePublicKeys {
        seal_key: endpoint.public(),
        ine_root: IneRoot::from_bytes(&root.public()).expect("root key"),
    }
}

/// Processes every store made by [`Fixture::init`] holds.
pub const PROCESSES: &str = r#"[
  {"id": "nacional", "name": "Proceso nacional de prueba", "accepted_models": ["E", "F", "G", "H"],
   "vigencia_cutoff": "2022-01-01", "scope": "national"},
  {"id": "otro", "name": "Otro proceso nacional de prueba", "accepted_models": ["G", "H"],
   "vigencia_cutoff": "2022-01-01", "scope": "national"}
]"#;

/// A temporary root holding a store folder and, beside it (never inside), its keyring.
pub struct Fixture {
    pub root: tempfile::TempDir,
    /// The test-side "endpoint" (INE): the secret half of the key the store seals to.
    pub endpoint: EndpointSecretKey,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            root: tempfile::tempdir().expect("temp dir"),
            endpoint: EndpointSecretKey::generate().expect("endpoint key"),
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    pub fn keyring_dir(&self) -> PathBuf {
        self.root.path().join("keyring")
    }

    pub fn db_path(&self) -> PathBuf {
        self.store_dir().join("apoyo.db")
    }

    pub fn parts_dir(&self) -> PathBuf {
        self.store_dir().join("parts")
    }

    /// The development key guard in this fixture's keyring folder (created on first use).
    pub fn guard(&self) -> FileKeyGuard {
        FileKeyGuard::open_or_create(&self.keyring_dir()).expect("keyring")
    }

    /// Creates the store with [`PROCESSES`] and the given options.
    pub fn init_with(&self, opts: StoreOptions) -> Store {
        self.init_with_processes(opts, PROCESSES)
    }

    /// What this fixture's stores are provisioned with (INE's seal key and an INE root).
    pub fn provisioning(&self) -> InePublicKeys {
        provisioning_for(&self.endpoint)
    }

    /// Creates the store with the given process list (JSON) and options.
    pub fn init_with_processes(&self, opts: StoreOptions, processes_json: &str) -> Store {
        let mut store = Store::init(
            &self.store_dir(),
            &self.guard(),
            &self.provisioning(),
            None,
            opts,
        )
        .expect("Store::init");
        let list = Process::parse_json_list(processes_json.as_bytes()).expect("process JSON");
        store.put_processes(&list).expect("put_processes");
        store
    }

    /// Creates the store with [`PROCESSES`] and default options.
    pub fn init(&self) -> Store {
        self.init_with(StoreOptions::default())
    }

    /// Opens the existing store with this fixture's keyring.
    pub fn open(&self) -> apoyo_sync::Result<Store> {
        self.open_with(StoreOptions::default())
    }

    pub fn open_with(&self, opts: StoreOptions) -> apoyo_sync::Result<Store> {
        Store::open(&self.store_dir(), &self.guard(), opts)
    }
}

/// `n` bytes from the operating system's random generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    apoyo_sync::testkit::crypto::fill_random(&mut v).expect("random");
    v
}

/// A JPEG-framed image of exactly `len` bytes (magic `FF D8 FF E0`, random body, `FF D9`).
pub fn jpeg(len: usize) -> Vec<u8> {
    assert!(len >= 8);
    let mut v = random_bytes(len);
    v[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    v[len - 2..].copy_from_slice(&[0xFF, 0xD9]);
    v
}

/// A JPEG-framed image of `len` bytes with `marker` written at `at`.
pub fn jpeg_with_marker(len: usize, marker: &[u8], at: usize) -> Vec<u8> {
    let mut v = jpeg(len);
    assert!(at >= 4 && at + marker.len() <= len - 2);
    v[at..at + marker.len()].copy_from_slice(marker);
    v
}

/// A PNG-framed image of exactly `len` bytes (the 8-byte PNG signature, random body).
pub fn png(len: usize) -> Vec<u8> {
    assert!(len >= 16);
    let mut v = random_bytes(len);
    v[..8].copy_from_slice(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
    v
}

/// Small, valid images (JPEG card sides and selfie, PNG signature).
pub fn small_images() -> Images {
    Images {
        front: jpeg(3_000),
        back: jpeg(2_500),
        selfie: jpeg(4_000),
        signature: png(700),
    }
}

/// A well-formed clave de elector, distinct for every `i` below 26^6.
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

/// A well-formed CURP, distinct for every `i` below 26^4.
pub fn curp(i: u32) -> String {
    let mut n = i;
    let mut letters = [b'A'; 4];
    for l in letters.iter_mut().rev() {
        *l = b'A' + (n % 26) as u8;
        n /= 26;
    }
    let letters = std::str::from_utf8(&letters).expect("ascii");
    format!("{letters}850615MDFRRS0{}", i % 10)
}

/// A capture with the given process and clave, model G and small images.
pub fn capture_of(process: &str, clave: &str) -> NewCapture {
    NewCapture {
        process_id: process.into(),
        model: CredentialModel::parse("G").expect("model"),
        fields: CardFields {
            clave_elector: clave.into(),
            ..Default::default()
        },
        location: None,
        images: small_images(),
        collector: None,
    }
}

/// Every regular file under `dir` (recursively), by path relative to `dir`, with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                walk(base, &path, out);
            } else if ft.is_file() {
                let rel = path.strip_prefix(base).expect("prefix").to_path_buf();
                out.insert(rel, fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The snapshot without the lock file (created empty by every open; carries no data).
pub fn snapshot_without_lock(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut s = snapshot(dir);
    s.remove(Path::new("store.lock"));
    s
}

/// Asserts every file of `before` is still present in `dir` with the same bytes.
pub fn assert_nothing_lost_or_changed(before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) {
    let after = snapshot(dir);
    for (path, bytes) in before {
        let now = after
            .get(path)
            .unwrap_or_else(|| panic!("{} was deleted", path.display()));
        assert!(
            now == bytes,
            "{} was modified ({} bytes before, {} after)",
            path.display(),
            bytes.len(),
            now.len()
        );
    }
}

/// Asserts `dir` holds the files of `before` (lock file aside), byte for byte: nothing deleted
/// or modified, and nothing added but SQLite's sidecar files of a read-only check, which carry
/// no data: an *empty* `apoyo.db-wal` (nothing to replay into the database) and the
/// `apoyo.db-shm` index (a read-only connection cannot remove them when it closes).
pub fn assert_untouched(before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) {
    assert_nothing_lost_or_changed(before, dir);
    let after = snapshot_without_lock(dir);
    for (path, bytes) in after.iter().filter(|(p, _)| !before.contains_key(*p)) {
        let harmless = path == Path::new("apoyo.db-shm")
            || (path == Path::new("apoyo.db-wal") && bytes.is_empty());
        assert!(
            harmless,
            "{} appeared ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
}

/// XORs one byte of a file with `0x01`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for flip");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.read_exact(&mut b).expect("read byte");
    b[0] ^= 0x01;
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&b).expect("write byte");
    f.sync_all().expect("sync");
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    occurring(hay, &[needle])[0]
}

/// Which of `needles` (each at least 2 bytes) occur in `hay`, in one pass over `hay` (a table
/// of the needles' first two bytes keeps the pass cheap even in a debug build).
pub fn occurring(hay: &[u8], needles: &[&[u8]]) -> Vec<bool> {
    let mut starts = vec![Vec::<usize>::new(); 1 << 16];
    for (i, n) in needles.iter().enumerate() {
        assert!(n.len() >= 2, "needle too short");
        starts[usize::from(u16::from_be_bytes([n[0], n[1]]))].push(i);
    }
    let mut found = vec![false; needles.len()];
    for pos in 0..hay.len().saturating_sub(1) {
        let list = &starts[usize::from(u16::from_be_bytes([hay[pos], hay[pos + 1]]))];
        for &i in list {
            if hay[pos..].starts_with(needles[i]) {
                found[i] = true;
            }
        }
    }
    found
}

/// The file names in the store's `parts/` folder.
pub fn part_file_names(store_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store_dir.join("parts"))
        .expect("parts dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
