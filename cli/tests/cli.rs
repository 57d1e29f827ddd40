//! The `apoyo` binary, driven as a user would: real processes, real store folders, the
//! development keyring always named explicitly through `APOYO_KEYRING` (never the home dir).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use apoyo_sync::FileKeyGuard;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::wire::crypto::EndpointSecretKey;

const PROCESSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json");
const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/images");
const CLAVE: &str = "GOMEZA85061509H123";

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

    fn store(&self) -> PathBuf {
        self.path("store")
    }

    fn keyring(&self) -> PathBuf {
        self.path("keyring")
    }

    fn keys(&self) -> PathBuf {
        self.path("endpoint-keys")
    }

    /// The binary with this environment's keyring; HOME and XDG_DATA_HOME point into the
    /// temporary root so nothing can reach the developer's own files.
    fn cmd_with_keyring<I, S>(&self, keyring: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(env!("CARGO_BIN_EXE_apoyo"));
        c.args(args)
            .env("APOYO_KEYRING", keyring)
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("home"))
            .stdin(Stdio::null());
        c
    }

    fn run_with_keyring<I, S>(&self, keyring: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with_keyring(keyring, args)
            .output()
            .expect("run apoyo")
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_keyring(&self.keyring(), args)
    }

    /// Runs and asserts success; returns stdout.
    fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.run(&args);
        assert_no_panic(&out);
        assert!(
            out.status.success(),
            "apoyo {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// endpoint-keygen, device init, process add.
    fn setup(&self) {
        self.ok([
            OsStr::new("endpoint-keygen"),
            OsStr::new("--out"),
            self.keys().as_os_str(),
        ]);
        let init = self.ok([
            OsStr::new("device"),
            OsStr::new("init"),
            OsStr::new("--store"),
            self.store().as_os_str(),
            OsStr::new("--endpoint-pub"),
            self.keys().join("endpoint.pub").as_os_str(),
            OsStr::new("--ine-root"),
            self.keys().join("ine-root.pub").as_os_str(),
        ]);
        assert!(init.contains("created"), "{init}");
        let added = self.ok([
            OsStr::new("process"),
            OsStr::new("add"),
            OsStr::new("--store"),
            self.store().as_os_str(),
            OsStr::new("--file"),
            OsStr::new(PROCESSES),
        ]);
        let ids: BTreeSet<&str> = added.lines().collect();
        assert_eq!(
            ids,
            BTreeSet::from(["revocacion-2022", "consulta-cdmx-demo"])
        );
    }

    /// `apoyo capture` arguments with the example images; `extra` appended.
    fn capture_args(&self, process: &str, clave: &str, extra: &[&str]) -> Vec<String> {
        let img = |n: &str| format!("{IMAGES}/{n}");
        let mut a: Vec<String> = [
            "capture",
            "--store",
            self.store().to_str().expect("utf-8 path"),
            "--process",
            process,
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
            clave,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn status_json(&self) -> serde_json::Value {
        let out = self.ok([
            OsStr::new("status"),
            OsStr::new("--store"),
            self.store().as_os_str(),
            OsStr::new("--json"),
        ]);
        serde_json::from_str(out.trim()).expect("status --json is JSON")
    }
}

fn assert_no_panic(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "panic text: {text}"
        );
    }
}

/// A refusal: non-zero exit (not a signal), exactly one line on stderr, no panic text.
/// Returns the exit code and the line.
fn refusal(out: &Output, what: &str) -> (i32, String) {
    assert_no_panic(out);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: succeeded");
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{what}: ended by a signal ({})", out.status));
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "{what}: stderr is not exactly one line: {stderr:?}"
    );
    assert!(stderr.starts_with("apoyo: "), "{what}: {stderr:?}");
    (code, stderr.trim_end().to_string())
}

/// `args` with the value after `flag` replaced.
fn replace(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|x| x == flag).expect("flag") + 1;
    args[i] = value.to_string();
    args
}

/// A child process killed (SIGKILL) and reaped when dropped, even if the test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn image(name: &str) -> Vec<u8> {
    fs::read(Path::new(IMAGES).join(name)).expect("example image")
}

/// The text of a tagged key file (`<tag> <64 hex>`), as 32 bytes.
fn tagged_key(path: &Path, tag: &str) -> [u8; 32] {
    let text = fs::read_to_string(path).expect("key file");
    let (found, hex_text) = text.trim().split_once(' ').expect("a tagged key");
    assert_eq!(found, tag, "{}", path.display());
    hex::decode(hex_text)
        .expect("hex key")
        .try_into()
        .expect("32 bytes")
}

#[test]
fn endpoint_keygen_writes_private_keys_and_their_public_halves() {
    let env = Env::new();
    let out = env.ok([
        OsStr::new("endpoint-keygen"),
        OsStr::new("--out"),
        env.keys().as_os_str(),
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            env.keys().join("endpoint.pub").display().to_string(),
            env.keys().join("ine-root.pub").display().to_string()
        ]
    );

    // v1.1 (ADR 0015): the key folder holds the INE root, a certified seal key (whose public
    // half is endpoint.pub) and receipt key, and the duplicate secret; every private file 0600.
    use std::os::unix::fs::PermissionsExt;
    let ring: Vec<std::path::PathBuf> = fs::read_dir(env.keys().join("ring"))
        .expect("ring")
        .map(|e| e.expect("entry").path())
        .collect();
    let seal_key = ring
        .iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("seal-") && name.ends_with(".key")
        })
        .expect("a seal key")
        .clone();
    let mut private: Vec<std::path::PathBuf> = ring
        .iter()
        .filter(|p| p.extension() == Some(OsStr::new("key")))
        .cloned()
        .collect();
    assert_eq!(private.len(), 2, "a seal key and a receipt key: {ring:?}");
    private.push(env.keys().join("ine-root.key"));
    private.push(env.keys().join("dup.secret"));
    for key in &private {
        let mode = fs::metadata(key).expect("key").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} mode {:o}",
            key.display(),
            mode & 0o777
        );
    }
    let secret = tagged_key(&seal_key, "apoyo-seal-key-v1");
    let public = tagged_key(&env.keys().join("endpoint.pub"), "apoyo-seal-pub-v1");
    assert_eq!(
        public,
        EndpointSecretKey::from_bytes(secret).public().0,
        "endpoint.pub is not the public half of the seal key"
    );
    let root = tagged_key(&env.keys().join("ine-root.key"), "apoyo-ine-root-key-v1");
    let root_public = tagged_key(&env.keys().join("ine-root.pub"), "apoyo-ine-root-v1");
    assert_eq!(
        apoyo_sync::testkit::crypto::Ed25519Secret::from_bytes(&root).public(),
        root_public,
        "ine-root.pub is not the public half of ine-root.key"
    );

    // It never overwrites a key.
    let before: Vec<Vec<u8>> = private.iter().map(|p| fs::read(p).expect("key")).collect();
    let again = env.run([
        OsStr::new("endpoint-keygen"),
        OsStr::new("--out"),
        env.keys().as_os_str(),
    ]);
    let (code, line) = refusal(&again, "second keygen");
    assert_eq!(code, 1, "{line}");
    let after: Vec<Vec<u8>> = private.iter().map(|p| fs::read(p).expect("key")).collect();
    assert_eq!(before, after);

    // A rotation adds a seal and a receipt key; the old ones stay.
    env.ok([
        OsStr::new("endpoint-keygen"),
        OsStr::new("--out"),
        env.keys().as_os_str(),
        OsStr::new("--rotate"),
    ]);
    let keys = fs::read_dir(env.keys().join("ring"))
        .expect("ring")
        .filter(|e| e.as_ref().unwrap().path().extension() == Some(OsStr::new("key")))
        .count();
    assert_eq!(keys, 4);
    assert_eq!(fs::read(&private[0]).expect("old key"), before[0]);
}

#[test]
fn device_init_refuses_a_wrong_key_file_with_one_line() {
    let env = Env::new();
    env.ok([
        OsStr::new("endpoint-keygen"),
        OsStr::new("--out"),
        env.keys().as_os_str(),
    ]);
    let keys = env.keys();
    // (given as --ine-root, given as --endpoint-pub, what the refusal names)
    let cases = [
        (
            keys.join("ine-root.key"),
            keys.join("endpoint.pub"),
            "private key file",
        ),
        (
            keys.join("endpoint.pub"),
            keys.join("endpoint.pub"),
            "another key's tag",
        ),
        (
            keys.join("ine-root.pub"),
            keys.join("ine-root.pub"),
            "another key's tag",
        ),
        (
            keys.join("ine-root.pub"),
            keys.join("dup.secret"),
            "another key's tag",
        ),
    ];
    for (i, (root, seal, expected)) in cases.iter().enumerate() {
        let store = env.path(&format!("store-{i}"));
        let out = env.run([
            OsStr::new("device"),
            OsStr::new("init"),
            OsStr::new("--store"),
            store.as_os_str(),
            OsStr::new("--endpoint-pub"),
            seal.as_os_str(),
            OsStr::new("--ine-root"),
            root.as_os_str(),
        ]);
        let (code, line) = refusal(&out, expected);
        assert_eq!(code, 1, "{line}");
        assert!(line.contains(expected), "{line}");
        assert!(!store.join("apoyo.db").exists(), "no store was made");
    }
}

#[test]
fn capture_status_and_open() {
    let env = Env::new();
    env.setup();

    // The store seals to the key made by endpoint-keygen.
    {
        let guard = FileKeyGuard::open(&env.keyring()).expect("keyring");
        let store = Store::open(&env.store(), &guard, StoreOptions::default()).expect("open");
        let public = fs::read_to_string(env.keys().join("endpoint.pub")).expect("pub");
        assert_eq!(
            store.endpoint_public(),
            apoyo_sync::testkit::crypto::anchor::parse_seal_public(&public).expect("seal key")
        );
    }

    let status = env.status_json();
    let keys: BTreeSet<&str> = status
        .as_object()
        .expect("status is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "captured",
            "uploading",
            "committed",
            "quarantined",
            "purged",
            "pending_bytes"
        ])
    );
    assert_eq!(status["captured"], 0);
    assert_eq!(status["pending_bytes"], 0);

    let args = env.capture_args(
        "revocacion-2022",
        CLAVE,
        &[
            "--entidad",
            "9",
            "--seccion",
            "1234",
            "--vigencia",
            "2029",
            "--curp",
            "GOMA850615HDFMRR01",
            "--lat",
            "19.432608",
            "--lon",
            "-99.133209",
            "--accuracy",
            "9.5",
            "--json",
        ],
    );
    let out = env.ok(&args);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("capture --json");
    let obj = v.as_object().expect("object");
    assert_eq!(
        obj.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["id", "state"])
    );
    assert_eq!(v["state"], "captured");
    let id = v["id"].as_str().expect("id string").to_string();
    let parsed: apoyo_sync::CaptureId = id.parse().expect("the id is a UUID");
    assert_eq!(parsed.0.get_version_num(), 7);

    // Plain capture prints the bare id.
    let out = env.ok(env.capture_args("consulta-cdmx-demo", "PEREZA90010115M001", &[]));
    let id2 = out.trim().to_string();
    id2.parse::<apoyo_sync::CaptureId>().expect("bare id");
    assert_ne!(id, id2);

    let status = env.status_json();
    assert_eq!(status["captured"], 2);
    for k in ["uploading", "committed", "quarantined", "purged"] {
        assert_eq!(status[k], 0, "{k}");
    }
    let image_bytes: u64 = ["front.jpg", "back.jpg", "selfie.jpg", "signature.png"]
        .iter()
        .map(|n| image(n).len() as u64)
        .sum();
    let pending = status["pending_bytes"].as_u64().expect("pending_bytes");
    assert!(
        pending > 2 * image_bytes,
        "pending {pending} for 2 × {image_bytes} image bytes"
    );
    let on_disk: u64 = fs::read_dir(env.store().join("parts"))
        .expect("parts")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert_eq!(pending, on_disk);

    // The human status works too.
    let text = env.ok([
        OsStr::new("status"),
        OsStr::new("--store"),
        env.store().as_os_str(),
    ]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("captured") && l.ends_with(" 2")),
        "{text}"
    );

    // open: byte-identical images and the fields.
    let out_dir = env.path("opened");
    let listed = env.ok([
        OsStr::new("open"),
        OsStr::new("--store"),
        env.store().as_os_str(),
        OsStr::new("--id"),
        OsStr::new(&id),
        OsStr::new("--out"),
        out_dir.as_os_str(),
    ]);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    for name in ["front.jpg", "back.jpg", "selfie.jpg", "signature.png"] {
        assert!(
            fs::read(out_dir.join(name)).expect(name) == image(name),
            "{name} differs"
        );
    }
    let fields: serde_json::Value =
        serde_json::from_slice(&fs::read(out_dir.join("fields.json")).expect("fields.json"))
            .expect("fields.json parses");
    assert_eq!(fields["capture_id"], id);
    assert_eq!(fields["process_id"], "revocacion-2022");
    assert_eq!(fields["model"], "G");
    assert_eq!(fields["fields"]["clave_elector"], CLAVE);
    assert_eq!(fields["fields"]["entidad"], 9);
    assert_eq!(fields["fields"]["seccion"], 1234);
    assert_eq!(fields["fields"]["vigencia"], 2029);
    assert_eq!(fields["fields"]["curp"], "GOMA850615HDFMRR01");
    assert_eq!(fields["location"]["lat"], 19.432608);
    assert_eq!(fields["location"]["lon"], -99.133209);
    assert_eq!(fields["location"]["accuracy_m"], 9.5);
}

#[test]
fn every_refusal_is_one_line_and_a_non_zero_exit() {
    let env = Env::new();
    env.setup();
    let first = env.ok(env.capture_args("revocacion-2022", CLAVE, &["--json"]));
    let first: serde_json::Value = serde_json::from_str(first.trim()).expect("json");
    let first_id = first["id"].as_str().expect("id").to_string();

    let gif = env.path("picture.gif");
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&[0u8; 500]);
    fs::write(&gif, g).expect("gif");
    let gif = gif.to_str().expect("utf-8").to_string();
    let empty = env.path("empty.jpg");
    fs::write(&empty, b"").expect("empty");
    let empty = empty.to_str().expect("utf-8").to_string();
    let missing = env.path("missing.jpg").to_str().expect("utf-8").to_string();

    struct Case {
        what: &'static str,
        args: Vec<String>,
        /// Expected exit code (the documented 1 for a refusal), and a word of the message.
        code: i32,
        says: &'static str,
        /// A value that must not appear in the message.
        secret: &'static str,
    }
    let with = |extra: &[&str]| env.capture_args("revocacion-2022", "LOPEZA85061509X777", extra);
    let cases = vec![
        Case {
            what: "invalid clave",
            args: env.capture_args("revocacion-2022", "GOMEZA85133109H123", &[]),
            code: 1,
            says: "clave de elector",
            secret: "GOMEZA85133109H123",
        },
        Case {
            what: "lower-case clave",
            args: env.capture_args("revocacion-2022", "gomeza85061509h124", &[]),
            code: 1,
            says: "clave de elector",
            secret: "gomeza85061509h124",
        },
        Case {
            what: "duplicate",
            args: env.capture_args("revocacion-2022", CLAVE, &[]),
            code: 1,
            says: "duplicate",
            secret: CLAVE,
        },
        Case {
            what: "unknown process",
            args: env.capture_args("no-such-process", "LOPEZA85061509X777", &[]),
            code: 1,
            says: "unknown process",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "GIF front",
            args: replace(with(&[]), "--front", &gif),
            code: 1,
            says: "front image",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "empty selfie",
            args: replace(with(&[]), "--selfie", &empty),
            code: 1,
            says: "selfie image",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "model not accepted",
            args: replace(with(&[]), "--model", "C"),
            code: 1,
            says: "model",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "not a model code",
            args: replace(with(&[]), "--model", "g"),
            code: 1,
            says: "model",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "expired credential",
            args: with(&["--vigencia", "2021"]),
            code: 1,
            says: "vigencia",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "out of scope",
            args: env.capture_args(
                "consulta-cdmx-demo",
                "LOPEZA85061514X777",
                &["--entidad", "14"],
            ),
            code: 1,
            says: "entidad",
            secret: "LOPEZA85061514X777",
        },
        Case {
            what: "bad CURP",
            args: with(&["--curp", "GOMA850615HDFMRR0"]),
            code: 1,
            says: "CURP",
            secret: "GOMA850615HDFMRR0",
        },
        Case {
            what: "location out of range",
            args: with(&["--lat", "91.5", "--lon", "-99.1", "--accuracy", "5"]),
            code: 1,
            says: "location",
            secret: "91.5",
        },
        Case {
            what: "negative accuracy",
            args: with(&["--lat", "19.4", "--lon", "-99.1", "--accuracy", "-5"]),
            code: 1,
            says: "location",
            secret: "LOPEZA85061509X777",
        },
        Case {
            what: "an endless front (/dev/zero)",
            args: replace(with(&[]), "--front", "/dev/zero"),
            code: 1,
            says: "front image",
            secret: "LOPEZA85061509X777",
        },
        // Command-line parse errors: usage (2), naming the flag, never echoing the value.
        Case {
            what: "entidad does not fit",
            args: with(&["--entidad", "300"]),
            code: 2,
            says: "--entidad",
            secret: "300",
        },
        Case {
            what: "seccion does not fit",
            args: with(&["--seccion", "70000"]),
            code: 2,
            says: "--seccion",
            secret: "70000",
        },
        Case {
            what: "vigencia does not fit",
            args: with(&["--vigencia", "99999"]),
            code: 2,
            says: "--vigencia",
            secret: "99999",
        },
        Case {
            what: "latitude with a decimal comma",
            args: with(&["--lat", "19,4326", "--lon", "-99.1332", "--accuracy", "5"]),
            code: 2,
            says: "--lat",
            secret: "19,4326",
        },
        Case {
            what: "latitude without longitude",
            args: with(&["--lat", "19.4326"]),
            code: 2,
            says: "--lon",
            secret: "19.4326",
        },
        Case {
            what: "a stray value",
            args: with(&["19.4326"]),
            code: 2,
            says: "apoyo capture --help",
            secret: "19.4326",
        },
        Case {
            what: "a stray word",
            args: with(&["maria"]),
            code: 2,
            says: "unexpected argument",
            secret: "maria",
        },
        Case {
            what: "a clave where a command goes",
            args: vec!["GOMEZA85133109H123".to_string()],
            code: 2,
            says: "unknown command",
            secret: "GOMEZA85133109H123",
        },
        Case {
            what: "a misspelt flag",
            args: with(&["--lot", "-99.1332"]),
            code: 2,
            says: "--lot",
            secret: "99.1332",
        },
    ];
    for case in &cases {
        let out = env.run(&case.args);
        let (code, line) = refusal(&out, case.what);
        assert_eq!(code, case.code, "{}: {line}", case.what);
        assert!(line.contains(case.says), "{}: {line}", case.what);
        assert!(
            !line.contains(case.secret),
            "{}: shows {}: {line}",
            case.what,
            case.secret
        );
        assert!(out.stdout.is_empty(), "{}: printed on stdout", case.what);
        if case.what == "duplicate" {
            assert!(
                line.contains(&first_id),
                "the duplicate names the earlier capture: {line}"
            );
        }
    }

    // A missing image file: refused before anything is read from the store.
    // It is the user's input, so a refusal (1), not an internal error; the message names the
    // flag and the file.
    let out = env.run(replace(with(&[]), "--back", &missing));
    let (code, line) = refusal(&out, "missing image file");
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("back image") && line.contains("--back"),
        "{line}"
    );
    assert!(line.contains(&missing), "{line}");
    let out = env.run(replace(
        with(&[]),
        "--signature",
        env.path("").to_str().expect("utf-8"),
    ));
    let (code, line) = refusal(&out, "a folder as the signature image");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("--signature"), "{line}");

    // Other commands refuse the same way.
    let bad_json = env.path("bad.json");
    fs::write(&bad_json, b"{\"id\": \"x\", ").expect("bad json");
    let bad_json = bad_json.to_str().expect("utf-8").to_string();
    let store = env.store().to_str().expect("utf-8").to_string();
    let unknown = apoyo_sync::CaptureId::new_v7(time::OffsetDateTime::now_utc()).to_string();
    let out_dir = env.path("out").to_str().expect("utf-8").to_string();
    let pub_file = env
        .keys()
        .join("endpoint.pub")
        .to_str()
        .expect("utf-8")
        .to_string();
    let root_file = env
        .keys()
        .join("ine-root.pub")
        .to_str()
        .expect("utf-8")
        .to_string();
    let (store, bad_json, unknown, out_dir) = (
        store.as_str(),
        bad_json.as_str(),
        unknown.as_str(),
        out_dir.as_str(),
    );
    for (what, args) in [
        (
            "bad process file",
            vec!["process", "add", "--store", store, "--file", bad_json],
        ),
        (
            "open an unknown id",
            vec!["open", "--store", store, "--id", unknown, "--out", out_dir],
        ),
        (
            "open a non-UUID id",
            vec![
                "open",
                "--store",
                store,
                "--id",
                "not-an-id",
                "--out",
                out_dir,
            ],
        ),
        (
            "init over a store",
            vec![
                "device",
                "init",
                "--store",
                store,
                "--endpoint-pub",
                &pub_file,
                "--ine-root",
                &root_file,
            ],
        ),
    ] {
        let out = env.run(&args);
        refusal(&out, what);
    }

    // Nothing was stored by any refusal.
    let status = env.status_json();
    assert_eq!(status["captured"], 1);
    assert_eq!(
        fs::read_dir(env.store().join("parts"))
            .expect("parts")
            .count(),
        1
    );
}

#[test]
fn an_unusable_store_exits_3_and_is_left_untouched() {
    let env = Env::new();
    env.setup();
    env.ok(env.capture_args("revocacion-2022", CLAVE, &[]));
    let store = env.store().to_str().expect("utf-8").to_string();
    let status_args = ["status", "--store", store.as_str(), "--json"];

    // Another machine's keyring.
    let other = env.path("other-keyring");
    FileKeyGuard::open_or_create(&other).expect("other keyring");
    let out = env.run_with_keyring(&other, status_args);
    let (code, line) = refusal(&out, "wrong keyring");
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("does not open this store"), "{line}");

    // A keyring folder without a key.
    let empty = env.path("empty-keyring");
    fs::create_dir(&empty).expect("mkdir");
    let out = env.run_with_keyring(&empty, status_args);
    let (code, line) = refusal(&out, "empty keyring");
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("not available"), "{line}");

    // A damaged database file: refused, byte for byte unchanged.
    let db = env.store().join("apoyo.db");
    fs::write(&db, b"this is not a database, just some bytes").expect("garble");
    let before = fs::read(&db).expect("db");
    let out = env.run(status_args);
    let (code, line) = refusal(&out, "corrupt store");
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("corrupt"), "{line}");
    assert_eq!(fs::read(&db).expect("db"), before);

    // No store at all.
    let nowhere = env.path("nowhere").to_str().expect("utf-8").to_string();
    let out = env.run(["status", "--store", nowhere.as_str()]);
    let (code, line) = refusal(&out, "no store");
    assert_eq!(code, 1, "{line}");
}

#[test]
fn a_store_in_use_is_refused_not_waited_for() {
    let env = Env::new();
    env.setup();
    let mut child = KillOnDrop(
        env.cmd_with_keyring(
            &env.keyring(),
            [
                OsStr::new("capture-loop"),
                OsStr::new("--store"),
                env.store().as_os_str(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn capture-loop"),
    );
    // Wait until it holds the store (it printed a first id).
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first id").expect("read");
    first.parse::<apoyo_sync::CaptureId>().expect("an id");

    let out = env.run(["status", "--store", env.store().to_str().expect("utf-8")]);
    drop(child);
    let (code, line) = refusal(&out, "status while capture-loop runs");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("in use"), "{line}");

    // Once the holder is gone the store opens again.
    assert!(env.status_json()["captured"].as_u64().expect("captured") >= 1);
}

#[test]
fn help_and_version_keep_their_output_and_exit_0() {
    let env = Env::new();
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["capture", "--help"],
        vec!["help", "sync"],
    ] {
        let out = env.run(&args);
        assert_no_panic(&out);
        assert!(out.status.success(), "{args:?}: {}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.trim().is_empty(), "{args:?}: no output");
        assert!(out.stderr.is_empty(), "{args:?}: wrote on stderr");
    }
    let out = env.run(["--version"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("apoyo "),
        "version line"
    );
    let out = env.run(["capture", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--clave-elector"));

    // No command at all is a usage error, still one line.
    let out = env.run(Vec::<&str>::new());
    let (code, line) = refusal(&out, "no command");
    assert_eq!(code, 2, "{line}");
}

/// Flips one byte in the middle of `path`.
fn flip_middle_byte(path: &Path) {
    let mut bytes = fs::read(path).expect("part file");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x5A;
    fs::write(path, bytes).expect("write part file");
}

#[test]
fn a_tampered_capture_is_refused_and_the_store_stays_usable() {
    let env = Env::new();
    env.setup();
    let tampered = env.ok(env.capture_args("revocacion-2022", CLAVE, &[]));
    let tampered = tampered.trim().to_string();
    let intact = env.ok(env.capture_args("revocacion-2022", "PEREZA90010115M001", &[]));
    let intact = intact.trim().to_string();

    let part_file = fs::read_dir(env.store().join("parts"))
        .expect("parts")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with(&tampered))
        })
        .expect("the capture's part file");
    flip_middle_byte(&part_file);

    let open = |id: &str, out: &str| {
        env.run([
            OsStr::new("open"),
            OsStr::new("--store"),
            env.store().as_os_str(),
            OsStr::new("--id"),
            OsStr::new(id),
            OsStr::new("--out"),
            env.path(out).as_os_str(),
        ])
    };
    // One capture failing authentication is a refusal (1), not an unusable store (3).
    let out = open(&tampered, "opened-tampered");
    let (code, line) = refusal(&out, "open a tampered capture");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("integrity"), "{line}");
    assert!(!line.contains(CLAVE), "{line}");

    // The store still opens, and so does the other capture.
    let listed = String::from_utf8_lossy(&open(&intact, "opened-intact").stdout).into_owned();
    assert_eq!(listed.lines().count(), 5, "{listed}");
    assert_eq!(
        fs::read(env.path("opened-intact").join("front.jpg")).expect("front.jpg"),
        image("front.jpg")
    );
    assert_eq!(env.status_json()["captured"], 2);
}

#[test]
fn storage_full_is_refused_through_the_disk_reserve_variable() {
    let env = Env::new();
    env.setup();
    let with_reserve = |reserve: &str, args: &[String]| {
        env.cmd_with_keyring(&env.keyring(), args)
            .env("APOYO_DISK_RESERVE_BYTES", reserve)
            .output()
            .expect("run apoyo")
    };
    let args = env.capture_args(
        "revocacion-2022",
        CLAVE,
        &[
            "--lat",
            "19.432608",
            "--lon",
            "-99.133209",
            "--accuracy",
            "9",
        ],
    );

    // A reserve no disk can leave free: refused, nothing stored.
    let out = with_reserve("1000000000000000000", &args);
    let (code, line) = refusal(&out, "storage full");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("storage full"), "{line}");
    assert!(
        !line.contains(CLAVE) && !line.contains("19.432608"),
        "{line}"
    );
    assert!(out.stdout.is_empty());
    let status = env.status_json();
    assert_eq!(status["captured"], 0);
    assert_eq!(status["pending_bytes"], 0);
    assert_eq!(
        fs::read_dir(env.store().join("parts"))
            .expect("parts")
            .count(),
        0
    );

    // A value that is not a number of bytes is a usage error, for every store command.
    for bad in ["lots", "-1", "1e6", ""] {
        let out = with_reserve(bad, &args);
        let (code, line) = refusal(&out, "bad reserve");
        assert_eq!(code, 2, "{bad:?}: {line}");
        assert!(line.contains("APOYO_DISK_RESERVE_BYTES"), "{line}");
        let status = [
            "status".to_string(),
            "--store".to_string(),
            env.store().to_str().expect("utf-8").to_string(),
        ];
        let (code, _) = refusal(&with_reserve(bad, &status), "bad reserve, status");
        assert_eq!(code, 2);
    }

    // A zero reserve lets the same capture through.
    let out = with_reserve("0", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.status_json()["captured"], 1);
}
