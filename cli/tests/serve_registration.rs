//! Issue 17, registration budgets as `apoyo serve` flags: `--registrations-global 1` lets one
//! device register and refuses the next (a real endpoint process, real device stores through
//! the `apoyo` binary), and a budget of zero or a bad forwarded header is a usage error. The
//! refused-commit budget (`--commit-refusals`, `--commit-refusal-window-secs`) and CIDR ranges
//! of trusted proxies are taken, and bad values of them are usage errors too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROCESSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json");
const FRONT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/images/front.jpg");

fn apoyo(dir: &Path, keyring: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apoyo"));
    c.env("APOYO_KEYRING", dir.join(keyring))
        .env("HOME", dir.join("home"))
        .env("XDG_DATA_HOME", dir.join("home"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn serve_args(dir: &Path) -> Vec<String> {
    let keys = dir.join("keys");
    let st = apoyo(dir, "none")
        .args(["endpoint-keygen", "--out"])
        .arg(&keys)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--dev",
        "--db",
        &dir.join("ine.db").to_string_lossy(),
        "--keys",
        &keys.to_string_lossy(),
        "--processes",
        PROCESSES,
    ]
    .map(String::from)
    .to_vec()
}

/// Kills (SIGKILL) and reaps the endpoint when dropped, even if the test panics.
struct Endpoint(Child);

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exit code of a process that must end within `secs` (killed, and `None`, if not).
fn exit_within(mut p: Endpoint, secs: u64) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn register(dir: &Path, name: &str, url: &str) -> Output {
    let store = dir.join(format!("{name}-store"));
    let keyring = format!("{name}-keyring");
    let keys = dir.join("keys");
    let init = apoyo(dir, &keyring)
        .args(["device", "init", "--store"])
        .arg(&store)
        .arg("--endpoint-pub")
        .arg(keys.join("endpoint.pub"))
        .arg("--ine-root")
        .arg(keys.join("ine-root.pub"))
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    apoyo(dir, &keyring)
        .args(["device", "register", "--store"])
        .arg(&store)
        .args(["--endpoint", url, "--provider", "google", "--front", FRONT])
        .args(["--email", &format!("{name}@example.org")])
        .output()
        .unwrap()
}

#[test]
fn the_global_registration_budget_flag_reaches_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(dir.path());
    args.extend(["--registrations-global", "1"].map(String::from));
    let mut child = apoyo(dir.path(), "none")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ep = Endpoint(child);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the listening line")
        .to_string();
    let first = register(dir.path(), "ana", &url);
    assert!(first.status.success(), "{first:?}");
    let second = register(dir.path(), "luis", &url);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second registration got through"
    );
    assert!(stderr.contains("rate_limited"), "{stderr}");
}

#[test]
fn bad_registration_limits_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_args(dir.path());
    for extra in [
        &["--registrations-per-source", "0"][..],
        &["--unactivated-ttl-secs", "0"],
        &[
            "--trusted-forwarded-header",
            "bad header",
            "--trusted-proxy",
            "127.0.0.1",
        ],
        &["--trusted-forwarded-header", "x-forwarded-for"],
        &[
            "--trusted-forwarded-header",
            "x-forwarded-for",
            "--trusted-proxy",
            "10.0.0.0/33",
        ],
        &["--commit-refusals", "0"],
        &["--registrations-per-ipv6-48", "0"],
        &["--commit-refusal-window-secs", "0"],
        &["--commit-refusal-window-secs", "86401"],
    ] {
        let child = apoyo(dir.path(), "none")
            .args(&base)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert_eq!(exit_within(Endpoint(child), 20), Some(2), "{extra:?}");
    }
}

#[test]
fn commit_refusal_flags_and_proxy_ranges_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = apoyo(dir.path(), "none")
        .args(serve_args(dir.path()))
        .args([
            "--commit-refusals",
            "3",
            "--commit-refusal-window-secs",
            "60",
        ])
        .args(["--trusted-forwarded-header", "x-forwarded-for"])
        .args([
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ep = Endpoint(child);
    assert!(line.starts_with("listening on "), "{line:?}");
}
