//! The processes of a kill loop: a real `apoyo serve` endpoint on a fixed loopback port (so a
//! restart on the same database answers the URL the devices registered with), device stores
//! made, registered and activated through the `apoyo` binary, and the bounded waits on them.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::KillOnDrop;

const PROCESSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json");
const FRONT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/images/front.jpg");
/// Longest wait for anything a healthy build does at once (a start-up, a command).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// An `apoyo` command with its own keyring and home.
pub fn apoyo<I, S>(root: &Path, keyring: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(env!("CARGO_BIN_EXE_apoyo"));
    c.args(args)
        .env("APOYO_KEYRING", keyring)
        .env("HOME", root.join("home"))
        .env("XDG_DATA_HOME", root.join("home"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end within [`PATIENCE`] and returns its stdout; panics (naming `what`)
/// if it fails or hangs.
pub fn run_ok(mut cmd: Command, what: &str) -> String {
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: spawn: {e}")),
    );
    let out = read_all_bounded(&mut child, what);
    let status = wait_bounded(&mut child, PATIENCE, what);
    assert!(status.success(), "{what} failed ({status}): {}", out.1);
    assert!(!out.1.contains("panicked"), "{what}: {}", out.1);
    out.0
}

/// Reads a child's stdout and stderr to their ends on threads, within [`PATIENCE`].
fn read_all_bounded(child: &mut KillOnDrop, what: &str) -> (String, String) {
    let mut stdout = child.0.stdout.take().expect("stdout piped");
    let mut stderr = child.0.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let _ = tx.send((0, s));
    });
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = tx2.send((1, s));
    });
    let mut out = (String::new(), String::new());
    for _ in 0..2 {
        let (which, s) = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{what}: no end of output within {PATIENCE:?}"));
        if which == 0 { out.0 = s } else { out.1 = s }
    }
    out
}

/// Waits for a child to end, at most `limit`; panics (naming `what`) past it.
pub fn wait_bounded(
    child: &mut KillOnDrop,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < until,
            "{what}: still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs a child that must still be running and reaps it. Returns false if it had already
/// ended by itself.
pub fn sigkill(child: &mut KillOnDrop) -> bool {
    if child.0.try_wait().expect("try_wait").is_some() {
        return false;
    }
    child.0.kill().expect("SIGKILL");
    let status = child.0.wait().expect("wait");
    assert!(!status.success(), "a killed process exited 0");
    true
}

/// The test's folder, the endpoint's keys and database, and the endpoint process.
pub struct World {
    pub root: tempfile::TempDir,
    pub port: u16,
    endpoint: Option<KillOnDrop>,
    pub endpoint_starts: usize,
}

impl World {
    /// A folder with fresh endpoint keys and the endpoint started on a free port.
    pub fn new() -> World {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(root.path().join("home")).expect("home");
        let keys = root.path().join("endpoint-keys");
        run_ok(
            apoyo(
                root.path(),
                &root.path().join("none"),
                [
                    OsStr::new("endpoint-keygen"),
                    OsStr::new("--out"),
                    keys.as_os_str(),
                ],
            ),
            "endpoint-keygen",
        );
        let mut w = World {
            root,
            port: 0,
            endpoint: None,
            endpoint_starts: 0,
        };
        w.start_endpoint();
        w
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn endpoint_db(&self) -> PathBuf {
        self.path("endpoint.db")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `apoyo serve` on the world's port (a free one the first time) and waits for its
    /// "listening" line. The port of a killed endpoint can take a moment to be free again.
    pub fn start_endpoint(&mut self) {
        assert!(self.endpoint.is_none(), "the endpoint is already running");
        let until = Instant::now() + PATIENCE;
        loop {
            match self.try_start_endpoint() {
                Ok(()) => return,
                Err(why) if Instant::now() < until => {
                    eprintln!("endpoint start failed ({why}); again");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(why) => panic!("the endpoint did not start within {PATIENCE:?}: {why}"),
            }
        }
    }

    fn try_start_endpoint(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("endpoint.log"))
            .expect("endpoint log");
        let listen = format!("127.0.0.1:{}", self.port);
        let keys = self.path("endpoint-keys");
        let mut child = KillOnDrop(
            apoyo(
                self.root.path(),
                &self.path("none"),
                [
                    OsStr::new("serve"),
                    OsStr::new("--db"),
                    self.endpoint_db().as_os_str(),
                    OsStr::new("--listen"),
                    OsStr::new(&listen),
                    OsStr::new("--keys"),
                    keys.as_os_str(),
                    OsStr::new("--processes"),
                    OsStr::new(PROCESSES),
                    OsStr::new("--dev"),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn apoyo serve"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(PATIENCE)
            .map_err(|_| format!("no line within {PATIENCE:?}"))?;
        let url = line
            .trim()
            .strip_prefix("listening on http://127.0.0.1:")
            .ok_or_else(|| format!("unexpected first line {line:?} (see endpoint.log)"))?;
        let port: u16 = url.parse().map_err(|_| format!("port in {line:?}"))?;
        assert!(self.port == 0 || self.port == port, "moved to port {port}");
        self.port = port;
        self.endpoint = Some(child);
        self.endpoint_starts += 1;
        Ok(())
    }

    /// SIGKILLs the endpoint; panics if it had died by itself.
    pub fn kill_endpoint(&mut self) {
        let mut child = self.endpoint.take().expect("the endpoint is running");
        assert!(
            sigkill(&mut child),
            "the endpoint died by itself (see endpoint.log)"
        );
    }

    /// Panics if the endpoint process ended by itself.
    pub fn assert_endpoint_alive(&mut self) {
        let child = self.endpoint.as_mut().expect("the endpoint is running");
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!("the endpoint died by itself ({status}); see endpoint.log");
        }
    }

    /// `GET path` on the endpoint over plain HTTP/1.1: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the endpoint");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        (status, body.to_string())
    }
}

/// A device store with its own keyring, registered and activated with the world's endpoint.
pub struct Device {
    pub root: PathBuf,
    pub store: PathBuf,
    pub keyring: PathBuf,
}

impl Device {
    pub fn new(w: &World, name: &str) -> Device {
        let d = Device {
            root: w.root.path().to_path_buf(),
            store: w.path(&format!("{name}-store")),
            keyring: w.path(&format!("{name}-keyring")),
        };
        let keys = w.path("endpoint-keys");
        let email = format!("{name}@example.org");
        let url = w.url();
        let s = d.store.as_os_str();
        d.ok(
            ["device", "init", "--store"],
            s,
            &[
                OsStr::new("--endpoint-pub"),
                keys.join("endpoint.pub").as_os_str(),
                OsStr::new("--ine-root"),
                keys.join("ine-root.pub").as_os_str(),
            ],
        );
        d.ok(
            ["process", "add", "--store"],
            s,
            &[OsStr::new("--file"), OsStr::new(PROCESSES)],
        );
        d.ok(
            ["device", "register", "--store"],
            s,
            &[
                OsStr::new("--endpoint"),
                OsStr::new(&url),
                OsStr::new("--email"),
                OsStr::new(&email),
                OsStr::new("--provider"),
                OsStr::new("google"),
                OsStr::new("--front"),
                OsStr::new(FRONT),
            ],
        );
        let code = crate::kill::view::mailbox_code(&w.endpoint_db(), &email);
        d.ok(
            ["device", "activate", "--store"],
            s,
            &[OsStr::new("--code"), OsStr::new(&code)],
        );
        d
    }

    fn ok(&self, head: [&str; 3], store: &OsStr, rest: &[&OsStr]) -> String {
        let mut args: Vec<&OsStr> = head.iter().map(OsStr::new).collect();
        args.push(store);
        args.extend_from_slice(rest);
        run_ok(
            apoyo(&self.root, &self.keyring, &args),
            &head[..2].join(" "),
        )
    }

    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        apoyo(&self.root, &self.keyring, args)
    }

    /// `apoyo sync` of this store, its stderr appended to `log`.
    pub fn spawn_sync(&self, budget: &str, log: &Path) -> KillOnDrop {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("sync log");
        KillOnDrop(
            self.cmd([
                OsStr::new("sync"),
                OsStr::new("--store"),
                self.store.as_os_str(),
                OsStr::new("--budget"),
                OsStr::new(budget),
                OsStr::new("--json"),
            ])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn apoyo sync"),
        )
    }

    /// Adds `n` captures with `apoyo capture-loop`, SIGKILLed once it has reported `n` (a
    /// capture it made but had not reported yet is in the store all the same).
    pub fn add_captures(&self, n: usize) {
        let mut child = KillOnDrop(
            self.cmd([
                OsStr::new("capture-loop"),
                OsStr::new("--store"),
                self.store.as_os_str(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn capture-loop"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().take(n) {
                if tx.send(line.is_ok()).is_err() {
                    return;
                }
            }
        });
        for i in 0..n {
            let ok = rx
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("capture-loop reported {i} of {n} captures"));
            assert!(ok, "capture-loop output");
        }
        sigkill(&mut child);
    }

    /// `apoyo receipts --json`.
    pub fn receipts(&self) -> serde_json::Value {
        let out = run_ok(
            self.cmd([
                OsStr::new("receipts"),
                OsStr::new("--store"),
                self.store.as_os_str(),
                OsStr::new("--json"),
            ]),
            "receipts",
        );
        serde_json::from_str(out.trim()).expect("receipts JSON")
    }
}
