//! Issue 17, `apoyo serve` as its own process: it logs to stderr (startup, and each request at
//! `RUST_LOG=debug`, never a token), and at its connection cap, with every connection
//! trickling a request body, its peak memory stays within the per-connection bound.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROCESSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json");

/// A running `apoyo serve`: the child, its address, and its stderr lines as they come.
struct Served {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `apoyo serve` under `ulimit -n <nofile>`, with `env` set.
    fn start(dir: &Path, nofile: u32, env: &[(&str, &str)]) -> Served {
        let keys = dir.join("keys");
        let st = Command::new(env!("CARGO_BIN_EXE_apoyo"))
            .arg("endpoint-keygen")
            .arg("--out")
            .arg(&keys)
            .stdout(Stdio::null())
            .status()
            .expect("keygen");
        assert!(st.success());
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_apoyo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.join("ine.db"))
            .arg("--keys")
            .arg(&keys)
            .args(["--processes", PROCESSES])
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_default()
            .to_string();
        assert!(!addr.is_empty(), "no address in {line:?}");
        Served {
            child,
            addr,
            stderr,
        }
    }

    /// Waits (at most 10 s) for a stderr line containing every one of `parts`; the lines read.
    fn wait_for_line(&self, parts: &[&str]) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if parts.iter().all(|p| line.contains(p)) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        Err(seen)
    }

    /// The process's peak resident memory (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

const TOKEN: &str = "tok-5ecret-4e7f9a";

fn get_processes(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let req = format!(
        "GET /v1/processes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut first = String::new();
    BufReader::new(s).read_line(&mut first).expect("answer");
    first
}

#[test]
fn serve_logs_its_start_on_stderr_by_default() {
    let dir = tempfile::tempdir().expect("temp");
    let served = Served::start(dir.path(), 1024, &[]);
    let line = served
        .wait_for_line(&["INFO", "endpoint listening", &served.addr])
        .unwrap_or_else(|seen| panic!("no startup line on stderr; saw {seen:?}"));
    assert!(line.contains("max_connections"), "{line}");
}

#[test]
fn serve_logs_each_request_at_debug_without_its_token() {
    let dir = tempfile::tempdir().expect("temp");
    let served = Served::start(dir.path(), 1024, &[("RUST_LOG", "debug")]);
    assert!(get_processes(&served.addr).starts_with("HTTP/1.1 200"));
    let line = served
        .wait_for_line(&["answered", "/v1/processes", "200"])
        .unwrap_or_else(|seen| panic!("no request line on stderr; saw {seen:?}"));
    assert!(line.contains("GET"), "{line}");
    // Everything logged until now: never the bearer token.
    let mut all = vec![line];
    all.extend(served.stderr.try_iter());
    assert!(!all.iter().any(|l| l.contains(TOKEN)), "{all:#?}");
}

/// The connection cap under test: the endpoint derives it from the descriptor limit as
/// `(limit − 32) / 2` (`endpoint/src/serve.rs`), so `ulimit -n 632` gives 300.
const CAP: u64 = 300;
const NOFILE: u32 = 632;
/// Body bytes each connection sends a second, and for how many seconds: above the endpoint's
/// minimum body rate (256 B/s), so every body is being read while memory is measured.
const TRICKLE_BYTES: usize = 512;
const TRICKLE_SECS: u64 = 10;
/// What one connection may hold, in KiB: its body buffer's up-front reservation (64 KiB at
/// most, `http::read_body`), the body bytes received so far, and 32 KiB for hyper's read
/// buffer, the connection's task and socket.
const PER_CONNECTION_KIB: u64 = 64 + (TRICKLE_BYTES as u64 * TRICKLE_SECS).div_ceil(1024) + 32;

/// At the connection cap, every connection a registration (the one body anyone may send,
/// without a token) declaring 1 MB and trickling it: the endpoint's peak memory grows by at
/// most `CAP × PER_CONNECTION_KIB` over its peak before the connections.
#[test]
fn slow_bodies_at_the_connection_cap_hold_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp");
    let served = Served::start(dir.path(), NOFILE, &[]);
    served
        .wait_for_line(&["endpoint listening", &format!("max_connections={CAP}")])
        .unwrap_or_else(|seen| panic!("not capped at {CAP}: {seen:?}"));
    assert!(get_processes(&served.addr).starts_with("HTTP/1.1 200"));
    let base = served.peak_rss_kib();
    let head = "POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 1000000\r\n\r\n";
    let mut conns: Vec<TcpStream> = (0..CAP)
        .map(|_| {
            let mut s = TcpStream::connect(&served.addr).expect("connect");
            s.write_all(head.as_bytes()).expect("head");
            s
        })
        .collect();
    let chunk = [0xa5u8; TRICKLE_BYTES];
    for _ in 0..TRICKLE_SECS {
        let round = Instant::now();
        for s in &mut conns {
            s.write_all(&chunk)
                .expect("the endpoint kept every trickling body");
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    let peak = served.peak_rss_kib();
    let bound = CAP * PER_CONNECTION_KIB;
    let grown = peak.saturating_sub(base);
    println!(
        "peak RSS {peak} KiB, {base} KiB before: +{grown} KiB for {CAP} connections ({} KiB each); bound +{bound} KiB ({PER_CONNECTION_KIB} KiB each)",
        grown / CAP
    );
    assert!(
        grown <= bound,
        "+{grown} KiB over {base} KiB, bound +{bound} KiB"
    );
    drop(conns);
}

/// The endpoint's memory budget for all the bodies it is reading (`endpoint/src/http.rs`).
const BODY_BUDGET_KIB: u64 = 128 * 1024;
/// What a connection receiving at full speed holds besides its body, in KiB: hyper's read
/// buffer (at most 64 KiB, `endpoint/src/serve.rs`) and the one a frame still being copied
/// keeps alive, its task and socket, and the allocator's per-thread caches. Measured: 235 KiB
/// (128 MiB budget, 300 connections: +195 to +205 MiB in all).
const FAST_CONNECTION_KIB: u64 = 384;
/// A registration's largest body: a card image (2 MiB) and 64 KiB.
const REGISTER_LIMIT: usize = 2 * 1024 * 1024 + 64 * 1024;

/// At the connection cap, every connection a registration body sent at full speed but for its
/// last 4 KiB, then held: without a budget each would keep ≈ 2 MiB (+480 MiB measured at 300,
/// ≈ 8 GiB at the 4096 cap). The endpoint's peak memory grows by at most its body budget plus
/// the per-connection overhead, and the bodies past the budget are refused `503`.
#[test]
fn bodies_held_at_the_connection_cap_stay_within_the_body_budget() {
    let dir = tempfile::tempdir().expect("temp");
    let served = Served::start(dir.path(), NOFILE, &[]);
    served
        .wait_for_line(&["endpoint listening", &format!("max_connections={CAP}")])
        .unwrap_or_else(|seen| panic!("not capped at {CAP}: {seen:?}"));
    let base = served.peak_rss_kib();
    let head = format!(
        "POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: {REGISTER_LIMIT}\r\n\r\n"
    );
    let mut conns: Vec<TcpStream> = (0..CAP)
        .map(|_| {
            let mut s = TcpStream::connect(&served.addr).expect("connect");
            s.write_all(head.as_bytes()).expect("head");
            s
        })
        .collect();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut sent = 0;
    while sent + chunk.len() <= REGISTER_LIMIT - 4096 {
        for s in &mut conns {
            // A refused body's connection is closed: its writes fail, the others go on.
            let _ = s.write_all(&chunk);
        }
        sent += chunk.len();
    }
    std::thread::sleep(Duration::from_secs(2));
    let peak = served.peak_rss_kib();
    let mut refused = 0;
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut first = String::new();
        if BufReader::new(&*s).read_line(&mut first).is_ok() && first.contains(" 503 ") {
            refused += 1;
        }
    }
    let bound = BODY_BUDGET_KIB + CAP * FAST_CONNECTION_KIB;
    let grown = peak.saturating_sub(base);
    println!(
        "bodies held: peak RSS {peak} KiB, {base} KiB before: +{grown} KiB, bound +{bound} KiB; {refused} of {CAP} refused 503"
    );
    assert!(
        grown <= bound,
        "+{grown} KiB over {base} KiB, bound +{bound} KiB"
    );
    assert!(
        refused > 0,
        "every body fit: the test did not reach the budget"
    );
    drop(conns);
}
