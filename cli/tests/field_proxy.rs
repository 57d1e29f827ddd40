//! `apoyo proxy` as a user runs it: it prints where it listens and the figures' source, logs
//! each injected fault as one timestamped line, prints a summary on Ctrl-C, and refuses a bad
//! profile or figure with a usage error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn apoyo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apoyo"))
}

/// A one-connection echo server on loopback.
fn echo() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn proxy_logs_each_fault_and_prints_a_summary_on_ctrl_c() {
    let up = echo();
    let mut child = apoyo()
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(up.to_string())
        .args([
            "--profile",
            "good",
            "--seed",
            "5",
            "--reset-up-after",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("proxying 127.0.0.1:"), "{first}");
    assert!(first.contains("profile good, seed 5"), "{first}");
    let addr = first.split_whitespace().nth(1).unwrap().to_string();
    let mut figures = String::new();
    out.read_line(&mut figures).unwrap();
    assert!(figures.contains("lte 58000/173000"), "{figures}");

    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&[1u8; 1000]);
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(
        got.len() <= 100,
        "at most the 100 bytes before the cut come back"
    );
    assert!(r.is_err(), "the connection is reset, not closed");

    std::thread::sleep(Duration::from_millis(200));
    // Ctrl-C.
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("summary: connections 1"), "{rest}");
    assert!(rest.contains("reset=1"), "{rest}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let line = err.lines().find(|l| l.contains("fault=reset")).expect(&err);
    // `2026-01-02T03:04:05.678Z link=0 conn=0 fault=reset dir=up after_bytes=100`
    let stamp = line.split_whitespace().next().unwrap();
    assert!(
        stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
        "{line}"
    );
    assert!(
        line.ends_with("link=0 conn=0 fault=reset dir=up after_bytes=100"),
        "{line}"
    );
}

#[test]
fn proxy_refuses_an_unknown_profile_and_a_bad_figure() {
    let out = apoyo()
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ])
        .args(["--profile", "5g"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("apoyo: unknown --profile (one of: good, 3g, edge"),
        "{err}"
    );
    let out = apoyo()
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ])
        .args(["--profile", "edge", "--loss-pct", "140"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "apoyo: invalid value for --loss-pct (a percentage, 0 to 100)"
    );
}

#[test]
fn proxy_help_says_loss_is_a_delay_and_where_real_drops_are() {
    let out = apoyo().args(["proxy", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Loss in a profile is a retransmission delay, not a drop"),
        "{help}"
    );
    assert!(
        help.contains("Real packet drops: scripts/netns-loss.sh"),
        "{help}"
    );
}
