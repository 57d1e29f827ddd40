//! Issue 17, device and CLI loose ends, driven through the `apoyo` binary: weak provisioned keys
//! refused at `device init` (leaving no development keyring behind), files and folders readable
//! by their owner only, `open --out` onto a file refused as input, an SQLite header of an
//! unknown file format refused as unusable.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PROCESSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json");
const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/images");

struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(root.path().join("home")).expect("home");
        Env { root }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
    fn run_with_keyring<S: AsRef<OsStr>>(&self, keyring: &Path, args: &[S]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_apoyo"))
            .args(args)
            .env("APOYO_KEYRING", keyring)
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("home"))
            .stdin(Stdio::null())
            .output()
            .expect("run apoyo")
    }
    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.run_with_keyring(&self.path("keyring"), args)
    }
    fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
    fn keygen(&self) {
        self.ok(&[
            OsStr::new("endpoint-keygen"),
            OsStr::new("--out"),
            self.path("keys").as_os_str(),
        ]);
    }
    fn init_args(&self, store: &Path, seal: &Path) -> Vec<PathBuf> {
        ["device", "init", "--store"]
            .iter()
            .map(PathBuf::from)
            .chain([store.to_path_buf(), "--endpoint-pub".into(), seal.into()])
            .chain(["--ine-root".into(), self.path("keys").join("ine-root.pub")])
            .collect()
    }
}

/// Exit code and the one stderr line of a refusal.
fn refusal(out: &Output) -> (i32, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    (out.status.code().expect("exit code"), stderr)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn device_init_refuses_weak_seal_keys_and_leaves_no_keyring() {
    let env = Env::new();
    env.keygen();
    let cases = [
        ("0".repeat(64), "all zeros"),
        // u = 1: a point of order 4 (the DH result does not depend on the device's secret).
        (format!("01{}", "0".repeat(62)), "low-order"),
        // A point of order 8.
        (
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800".to_string(),
            "low-order",
        ),
    ];
    for (i, (hex, expected)) in cases.iter().enumerate() {
        let seal = env.path(&format!("weak-{i}.pub"));
        fs::write(&seal, format!("apoyo-seal-pub-v1 {hex}\n")).unwrap();
        let store = env.path(&format!("store-{i}"));
        let (code, line) = refusal(&env.run(&env.init_args(&store, &seal)));
        assert_eq!(code, 1, "{line}");
        assert!(line.contains(expected), "{line}");
        assert!(!store.join("apoyo.db").exists());
        assert!(!env.path("keyring").exists(), "{line}");
    }
    // A refusal after the keyring was made (it would sit inside the store folder) removes it.
    let store = env.path("store-k");
    let inside = store.join("keyring");
    let args = env.init_args(&store, &env.path("keys").join("endpoint.pub"));
    let (code, line) = refusal(&env.run_with_keyring(&inside, &args));
    assert_eq!(code, 1, "{line}");
    assert!(!inside.exists(), "a refused init left its keyring: {line}");
}

#[test]
fn files_are_private_and_open_out_refuses_a_file() {
    let env = Env::new();
    env.keygen();
    let store = env.path("store");
    env.ok(&env.init_args(&store, &env.path("keys").join("endpoint.pub")));
    let s = store.to_str().unwrap();
    env.ok(&["process", "add", "--store", s, "--file", PROCESSES]);
    let img = |n: &str| format!("{IMAGES}/{n}");
    let id = env.ok(&[
        "capture",
        "--store",
        s,
        "--process",
        "revocacion-2022",
        "--model",
        "G",
        "--front",
        &img("front.jpg"),
        "--back",
        &img("back.jpg"),
        "--selfie",
        &img("selfie.jpg"),
        "--signature",
        &img("signature.png"),
        "--clave-elector",
        "GOMEZA85061509H123",
    ]);
    let id = id.trim().to_string();
    for dir in [
        store.clone(),
        store.join("parts"),
        env.path("keyring"),
        env.path("keys"),
        env.path("keys").join("ring"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in [
        store.join("apoyo.db"),
        store.join("store.lock"),
        env.path("keys").join("ine-root.key"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let out = env.path("opened");
    let listed = env.ok(&[
        "open",
        "--store",
        s,
        "--id",
        &id,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(listed.contains("fields.json"), "{listed}");
    assert_eq!(mode(&out), 0o700);
    for entry in fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // --out naming a file: the user's input is wrong (1), not an internal error (4).
    let file = env.path("a-file");
    fs::write(&file, b"x").unwrap();
    let (code, line) = refusal(&env.run(&[
        "open",
        "--store",
        s,
        "--id",
        &id,
        "--out",
        file.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{line}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn an_unknown_sqlite_file_format_is_refused_unchanged() {
    let env = Env::new();
    env.keygen();
    let store = env.path("store");
    env.ok(&env.init_args(&store, &env.path("keys").join("endpoint.pub")));
    let db = store.join("apoyo.db");
    let mut bytes = fs::read(&db).unwrap();
    bytes[18] = 3;
    fs::write(&db, &bytes).unwrap();
    for cmd in ["status", "receipts"] {
        let (code, line) = refusal(&env.run(&[cmd, "--store", store.to_str().unwrap()]));
        assert_eq!(code, 3, "{cmd}: {line}");
        assert!(line.contains("unknown SQLite file format"), "{cmd}: {line}");
    }
    assert_eq!(fs::read(&db).unwrap(), bytes, "the store was changed");
}

/// A tmpfs of a few MiB, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("dir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "this test mounts a small tmpfs to fill it (it runs as root in CI)"
        );
        Tmpfs { dir }
    }
    fn fill(&self) {
        use std::io::Write;
        let mut f = fs::File::create(self.dir.path().join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let mut small = [0u8; 512];
        while f.write_all(&small[..]).is_ok() {
            small[0] ^= 1;
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_storage_full_and_the_store_still_reads() {
    let env = Env::new();
    env.keygen();
    let disk = Tmpfs::mount("8m");
    let store = disk.dir.path().join("store");
    env.ok(&env.init_args(&store, &env.path("keys").join("endpoint.pub")));
    let s = store.to_str().unwrap();
    env.ok(&["process", "add", "--store", s, "--file", PROCESSES]);
    let img = |n: &str| format!("{IMAGES}/{n}");
    let capture = |clave: &str| {
        Command::new(env!("CARGO_BIN_EXE_apoyo"))
            .args(["capture", "--store", s, "--process", "revocacion-2022"])
            .args(["--model", "G", "--front", &img("front.jpg"), "--back"])
            .args([&img("back.jpg"), "--selfie", &img("selfie.jpg")])
            .args([
                "--signature",
                &img("signature.png"),
                "--clave-elector",
                clave,
            ])
            .env("APOYO_KEYRING", env.path("keyring"))
            .env("APOYO_DISK_RESERVE_BYTES", "0")
            .env("HOME", env.path("home"))
            .stdin(Stdio::null())
            .output()
            .expect("run apoyo")
    };
    assert!(capture("GOMEZA85061509H123").status.success());
    disk.fill();
    let before = fs::read(store.join("apoyo.db")).unwrap();
    // Reads work: the store is intact, only full.
    let status = env.ok(&["status", "--store", s]);
    assert!(status.contains("captured     1"), "{status}");
    // A write is refused as storage full (1), not as a corrupt store (3).
    let (code, line) = refusal(&capture("LOPEZB90010209M456"));
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("storage full"), "{line}");
    assert_eq!(fs::read(store.join("apoyo.db")).unwrap(), before);
}
