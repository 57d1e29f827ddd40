//! Helpers of the proxy's tests: upstream test servers on loopback, a proxy started with a
//! profile, and reading a connection to its end.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apoyo_fieldkit::profile::Profile;
use apoyo_fieldkit::proxy::{self, FaultLog, ProxyConfig, RunningProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What an upstream test server saw.
#[derive(Default)]
pub struct Seen {
    pub accepted: AtomicU64,
    pub received: AtomicU64,
}

/// Upstream modes.
#[derive(Clone, Copy)]
pub enum Up {
    Echo,
    /// Reads and counts everything.
    Sink,
    /// Sends this many bytes, then keeps the connection open.
    Source(usize),
}

pub async fn upstream(mode: Up) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            s2.accepted.fetch_add(1, Ordering::SeqCst);
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                if let Up::Source(n) = mode {
                    let _ = s.write_all(&vec![7u8; n]).await;
                }
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            seen.received.fetch_add(n as u64, Ordering::SeqCst);
                            if let Up::Echo = mode
                                && s.write_all(&buf[..n]).await.is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

pub async fn start(p: Profile, upstream: SocketAddr, seed: u64, http: bool) -> RunningProxy {
    proxy::start(
        ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream,
            profile: p,
            seed,
            http_mode: http,
            link: 0,
        },
        Arc::new(FaultLog::new(None)),
    )
    .await
    .unwrap()
}

pub fn clean() -> Profile {
    Profile::passthrough("test", "test")
}

pub async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, msg);
    t.elapsed()
}

/// Reads until EOF, error or `wait` of silence: (bytes, how it ended).
pub async fn read_all(s: &mut TcpStream, wait: Duration) -> (usize, &'static str) {
    let mut total = 0;
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return (total, "silent"),
            Ok(Ok(0)) => return (total, "eof"),
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (total, "reset");
            }
            Ok(Err(_)) => return (total, "error"),
        }
    }
}
