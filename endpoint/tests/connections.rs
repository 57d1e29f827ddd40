//! Issue 17, availability at the HTTP level, over real sockets against a real endpoint on
//! loopback: a header trickle, an idle connection (fresh or kept alive) and a body trickle are
//! closed; an honest slow body is not; a full connection budget still answers the newest
//! client; bad settings are refused at start, never a panic later; the device lets an idle
//! connection go before the endpoint closes it. (The descriptor-limit case
//! runs `apoyo serve` as its own process: cli/tests/connections.rs.)

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use apoyo_endpoint::{EndpointConfig, KeyRing, RunningEndpoint};
use apoyo_sync::Process;
use apoyo_sync::testkit::crypto::Ed25519Secret;

const PROCESSES: &str = include_str!("../../examples/processes.json");

struct Ep {
    ep: RunningEndpoint,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> EndpointConfig {
    let root = Ed25519Secret::generate().unwrap();
    let ring = KeyRing::generate(&root, time::OffsetDateTime::now_utc()).unwrap();
    let processes = Process::parse_json_list(PROCESSES.as_bytes()).unwrap();
    EndpointConfig::new(dir.join("endpoint.db"), ring, processes)
}

async fn start(tune: impl FnOnce(&mut EndpointConfig)) -> Ep {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    tune(&mut cfg);
    let ep = apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Ep { ep, _dir: dir }
}

/// Reads until the peer closes (or resets) the connection; how long that took, or `None` if it
/// was still open after `bound`. Whatever the server answered is returned too.
fn wait_closed(s: &mut TcpStream, bound: Duration) -> (Option<Duration>, Vec<u8>) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < bound {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (Some(t0.elapsed()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (Some(t0.elapsed()), got),
        }
    }
    (None, got)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_trickle_and_idle_connections_are_closed() {
    let e = start(|c| c.header_read_timeout = Duration::from_secs(2)).await;
    let addr = e.ep.addr;
    tokio::task::spawn_blocking(move || {
        // Nothing sent at all.
        let mut idle = connect(addr);
        // A slowloris: one header byte every 300 ms, never finishing the head.
        let mut trickle = connect(addr);
        let writer = {
            let mut w = trickle.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(b"GET /v1/processes HTTP/1.1\r\nHost: x\r\n");
                for _ in 0..60 {
                    if w.write_all(b"X").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        // Kept alive after a whole exchange, then idle.
        let mut kept = connect(addr);
        kept.write_all(b"GET /v1/processes HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 12];
        kept.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        for (what, s) in [
            ("idle", &mut idle),
            ("trickle", &mut trickle),
            ("kept-alive", &mut kept),
        ] {
            let (closed, _) = wait_closed(s, Duration::from_secs(10));
            let took = closed.unwrap_or_else(|| panic!("{what}: still open after 10 s"));
            assert!(
                took < Duration::from_secs(6),
                "{what}: closed after {took:?}"
            );
        }
        writer.join().unwrap();
    })
    .await
    .unwrap();
    e.ep.shutdown().await;
}

/// Sends a registration body of `len` bytes in pieces of `piece` every `every`, and returns
/// the status line of the answer (or `None` if there was none in `bound`).
fn post_slowly(addr: SocketAddr, len: usize, piece: usize, every: Duration) -> String {
    let mut s = connect(addr);
    let head = format!(
        "POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < len {
            let n = piece.min(len - sent);
            if w.write_all(&vec![0xa0; n]).is_err() {
                return;
            }
            sent += n;
            std::thread::sleep(every);
        }
    });
    let (_, got) = wait_closed(&mut s, Duration::from_secs(20));
    // Stops the writer too (it holds a clone of the socket).
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickle_is_refused_but_an_honest_2g_body_is_read() {
    let e = start(|c| {
        c.body_idle_timeout = Duration::from_secs(2);
        c.body_min_rate = 256;
    })
    .await;
    let addr = e.ep.addr;
    tokio::task::spawn_blocking(move || {
        // 20 bytes every 200 ms (100 B/s): never a pause of 2 s, but far below the minimum.
        let t0 = Instant::now();
        let line = post_slowly(addr, 100_000, 20, Duration::from_millis(200));
        assert!(line.contains(" 408 "), "{line:?}");
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
        // 18 kbit/s (2250 B/s) in 450-byte pieces: read whole, then refused for what it
        // says (it is not a registration), not for its pace.
        let line = post_slowly(addr, 12_000, 450, Duration::from_millis(200));
        assert!(!line.contains(" 408 "), "{line:?}");
        assert!(line.starts_with("HTTP/1.1 4"), "{line:?}");
    })
    .await
    .unwrap();
    e.ep.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_budget_still_answers_the_newest_client() {
    let e = start(|c| c.max_connections = Some(16)).await;
    let addr = e.ep.addr;
    tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..60).map(|_| connect(addr)).collect();
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /v1/processes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first)
            .expect("an answer while 60 idle connections are held");
        assert_eq!(&first, b"HTTP/1.1 200");
        drop(held);
    })
    .await
    .unwrap();
    e.ep.shutdown().await;
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.upload_ttl = Duration::MAX;
    let err = apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect_err("a huge upload_ttl");
    assert!(err.to_string().contains("upload_ttl"), "{err}");
    let mut cfg = config(dir.path());
    cfg.dev = true;
    let err = apoyo_endpoint::start(cfg, "0.0.0.0:0".parse().unwrap())
        .await
        .expect_err("--dev on every interface");
    assert!(err.to_string().contains("loopback"), "{err}");
    // The longest accepted TTL serves uploads (no overflow in Upload-Expires).
    let h = common::Harness::start_with(common::Opts {
        upload_ttl: apoyo_endpoint::MAX_UPLOAD_TTL,
        ..Default::default()
    })
    .await;
    let (_, token) = h.raw_device("ttl").await;
    let id = apoyo_sync::CaptureId::new_v7(time::OffsetDateTime::now_utc());
    let a = h
        .create_upload(&token, &id, apoyo_sync::PartKind::Front, 1000)
        .await;
    assert_eq!(a.status, 201, "{:?}", a.error());
}

/// A body the endpoint refuses without reading (a PATCH with no token) is drained only so
/// long: one byte every 300 ms (never a pause of a second) still gets its answer within the
/// drain's bound, and the connection slot is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_trickling_forever_is_answered_within_the_drain_bound() {
    let e = start(|_| {}).await;
    let addr = e.ep.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let head = "PATCH /v1/uploads/abc HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\
                    Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n\
                    Content-Length: 100000\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..200 {
                if w.write_all(&[0]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let t0 = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && t0.elapsed() < Duration::from_secs(40) {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let took = t0.elapsed();
        let _ = s.shutdown(std::net::Shutdown::Both);
        writer.join().unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 4"), "no refusal: {text:?}");
        assert!(
            took < Duration::from_secs(20),
            "answered only after {took:?}"
        );
    })
    .await
    .unwrap();
    e.ep.shutdown().await;
}

#[test]
fn the_device_stops_reusing_an_idle_connection_before_the_endpoint_closes_it() {
    // The endpoint closes a kept-alive connection `header_read_timeout` after its last
    // answer; a device reusing one past that sends its request into a closing socket (on 2G,
    // a PATCH waiting for its turn broke that way). The device's pool must let go first.
    use apoyo_sync::testkit::sync::transport::POOL_IDLE_TIMEOUT;
    let endpoint = apoyo_endpoint::DEFAULT_HEADER_READ_TIMEOUT;
    assert!(
        POOL_IDLE_TIMEOUT + Duration::from_secs(2) < endpoint,
        "device pool idle {POOL_IDLE_TIMEOUT:?} vs endpoint keep-alive {endpoint:?}"
    );
}
