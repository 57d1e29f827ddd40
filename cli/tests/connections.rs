//! Issue 17, the endpoint as its own process (`apoyo serve`): with its descriptor limit at 256,
//! 370 idle connections do not stop it answering a new client; `--dev` is refused on a
//! non-loopback address; its database and blob folder are readable by their owner only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PROCESSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json");

fn keygen(keys: &Path) {
    let st = Command::new(env!("CARGO_BIN_EXE_apoyo"))
        .arg("endpoint-keygen")
        .arg("--out")
        .arg(keys)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// `apoyo serve` under `ulimit -n <nofile>`; the child and its address.
fn serve(dir: &Path, nofile: u32, listen: &str, dev: bool) -> (Child, String) {
    let keys = dir.join("keys");
    keygen(&keys);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_apoyo"))
        .args(["serve", "--listen", listen, "--db"])
        .arg(dir.join("data").join("ine.db"))
        .arg("--keys")
        .arg(&keys)
        .args(["--processes", PROCESSES]);
    if dev {
        cmd.arg("--dev");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_default()
        .to_string();
    (child, addr)
}

fn get_processes(addr: &str) -> std::io::Result<[u8; 12]> {
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(15))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(b"GET /v1/processes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut first = [0u8; 12];
    s.read_exact(&mut first)?;
    Ok(first)
}

#[test]
fn idle_connections_past_the_descriptor_limit_do_not_stop_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path(), 256, "127.0.0.1:0", false);
    assert!(!addr.is_empty(), "no address");
    assert_eq!(&get_processes(&addr).unwrap(), b"HTTP/1.1 200");
    let held: Vec<TcpStream> = (0..370)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    // Give the endpoint the time to accept what it can.
    std::thread::sleep(Duration::from_millis(500));
    let answer = get_processes(&addr);
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
    assert_eq!(
        &answer.expect("an answer while 370 idle connections are held"),
        b"HTTP/1.1 200"
    );
    let data = dir.path().join("data");
    assert_eq!(fs_mode(&data), 0o700);
    assert_eq!(fs_mode(&data.join("ine.db")), 0o600);
    assert_eq!(fs_mode(&data.join("ine.db.blobs").join("uploads")), 0o700);
}

fn fs_mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn dev_routes_are_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path(), 1024, "0.0.0.0:0", true);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(addr.is_empty(), "it served on {addr}");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");
}

/// A `--db` that looks like a connection string but is not a postgres:// URL is refused in
/// one line that never echoes it (it may hold a password), and no file is made of it.
#[test]
fn a_connection_string_that_is_not_a_postgres_url_is_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    keygen(&keys);
    for db in [
        "host=db.example user=apoyo password=s3cr3t-pw",
        "mysql://apoyo:s3cr3t-pw@db.example/apoyo",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_apoyo"))
            .current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db, "--keys"])
            .arg(&keys)
            .args([
                "--processes",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/processes.json"),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{db}: {err}");
        assert!(err.contains("--db"), "{err}");
        assert!(!err.contains("s3cr3t"), "the password was echoed: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t"));
        let made: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("s3cr3t"))
            .collect();
        assert!(made.is_empty(), "a file was named after the string");
    }
}
