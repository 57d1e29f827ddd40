//! The proxy's faults, each shown over real TCP on loopback against a real upstream, and each
//! with the check that fails without it (the control run or the byte-exact count).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use apoyo_fieldkit::profile::{self, Profile};
use apoyo_fieldkit::schedule::{FlapSchedule, plan_for};
use common::{Up, clean, read_all, roundtrip, start, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn payload_passes_byte_identical_and_is_counted_at_the_device_socket() {
    let (up, _) = upstream(Up::Echo).await;
    let p = Profile {
        up_kbps: Some(20_000.0),
        down_kbps: Some(20_000.0),
        delay_ms: 5,
        jitter_ms: 20,
        ..clean()
    };
    let px = start(p, up, 1, false).await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    let msg: Vec<u8> = (0..200_000).map(|_| rng.u8(..)).collect();
    roundtrip(&mut s, &msg).await;
    let link = &px.link;
    assert_eq!(link.up_bytes.load(Ordering::SeqCst), 200_000);
    assert_eq!(link.down_bytes.load(Ordering::SeqCst), 200_000);
    assert_eq!(link.wire_bytes(), 400_000);
}

#[tokio::test]
async fn refused_connections_are_reset_and_never_reach_the_upstream() {
    let (up, seen) = upstream(Up::Echo).await;
    let px = start(
        Profile {
            refuse_pct: 100.0,
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let _ = s.write_all(b"hello").await;
    let (n, how) = read_all(&mut s, Duration::from_secs(2)).await;
    assert_eq!((n, how), (0, "reset"));
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(px.log.summary().faults.get("refused"), Some(&1));
    // Control: without the fault the same exchange is answered.
    let px = start(clean(), up, 1, false).await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    roundtrip(&mut s, b"hello").await;
}

#[tokio::test]
async fn reset_after_n_bytes_device_to_endpoint() {
    let (up, seen) = upstream(Up::Sink).await;
    let px = start(
        Profile {
            reset_up_after: Some(10_000),
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let _ = s.write_all(&vec![1u8; 50_000]).await;
    let (_, how) = read_all(&mut s, Duration::from_secs(3)).await;
    assert_eq!(how, "reset");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.received.load(Ordering::SeqCst), 10_000);
    let ev = px.log.events();
    assert!(
        ev.iter()
            .any(|e| e.kind == "reset" && e.detail == "dir=up after_bytes=10000")
    );
}

#[tokio::test]
async fn reset_after_n_bytes_endpoint_to_device() {
    let (up, _) = upstream(Up::Source(50_000)).await;
    let px = start(
        Profile {
            reset_down_after: Some(7_000),
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let (n, how) = read_all(&mut s, Duration::from_secs(3)).await;
    assert_eq!((n, how), (7_000, "reset"));
    // Control: the whole answer arrives without the fault.
    let px = start(clean(), up, 1, false).await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let (n, how) = read_all(&mut s, Duration::from_millis(500)).await;
    assert_eq!((n, how), (50_000, "silent"));
}

#[tokio::test]
async fn stall_stops_forwarding_without_a_reset() {
    let (up, _) = upstream(Up::Source(20_000)).await;
    let px = start(
        Profile {
            stall_after: Some(5_000),
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let (n, how) = read_all(&mut s, Duration::from_secs(1)).await;
    // Neither the rest of the bytes, nor an end, nor a reset: the connection just hangs.
    assert_eq!((n, how), (5_000, "silent"));
    assert!(px.log.events().iter().any(|e| e.kind == "stall"));
    // The same stall device → endpoint: the upstream gets exactly 5000 bytes and no end.
    let (up, seen) = upstream(Up::Sink).await;
    let px = start(
        Profile {
            stall_after: Some(5_000),
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    s.write_all(&vec![3u8; 20_000]).await.unwrap();
    let (_, how) = read_all(&mut s, Duration::from_secs(1)).await;
    assert_eq!(how, "silent");
    assert_eq!(seen.received.load(Ordering::SeqCst), 5_000);
}

async fn upload_time(p: Profile, bytes: usize) -> Duration {
    let (up, seen) = upstream(Up::Sink).await;
    let px = start(p, up, 1, false).await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let t = Instant::now();
    s.write_all(&vec![5u8; bytes]).await.unwrap();
    while seen.received.load(Ordering::SeqCst) < bytes as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

async fn download_time(p: Profile, bytes: usize) -> Duration {
    let (up, _) = upstream(Up::Source(bytes)).await;
    let px = start(p, up, 1, false).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let mut buf = vec![0u8; bytes];
    s.read_exact(&mut buf).await.unwrap();
    t.elapsed()
}

#[tokio::test]
async fn bandwidth_is_limited_in_each_direction_separately() {
    // 20 000 bytes = 160 kbit: one second at 160 kbit/s up.
    let p = Profile {
        up_kbps: Some(160.0),
        down_kbps: Some(640.0),
        ..clean()
    };
    let up = upload_time(p.clone(), 20_000).await;
    assert!(up >= Duration::from_millis(950), "upload took {up:?}");
    let down = download_time(p, 20_000).await;
    assert!(down >= Duration::from_millis(230), "download took {down:?}");
    assert!(
        down < up,
        "down {down:?} should beat up {up:?} at 4x the rate"
    );
    // Control: unlimited, the same upload is far quicker than the limited one.
    let free = upload_time(clean(), 20_000).await;
    assert!(
        free < Duration::from_millis(500),
        "unlimited upload took {free:?}"
    );
}

#[tokio::test]
async fn latency_jitter_and_loss_delay_segments() {
    let (up, _) = upstream(Up::Echo).await;
    let px = start(
        Profile {
            delay_ms: 150,
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let rt = roundtrip(&mut s, b"ping").await;
    assert!(rt >= Duration::from_millis(300), "round trip {rt:?}");

    let px = start(
        Profile {
            jitter_ms: 300,
            ..clean()
        },
        up,
        4,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let mut times = Vec::new();
    for _ in 0..8 {
        times.push(roundtrip(&mut s, b"ping").await);
    }
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis(40),
        "jitter spread {spread:?}"
    );

    let px = start(
        Profile {
            loss_pct: 100.0,
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let rt = roundtrip(&mut s, b"ping").await;
    assert!(
        rt >= Duration::from_millis(400),
        "two lost segments: {rt:?}"
    );
    assert_eq!(px.log.summary().faults.get("loss"), Some(&2));
}

#[tokio::test]
async fn http_mode_answers_429_or_503_with_retry_after_itself() {
    let (up, seen) = upstream(Up::Echo).await;
    let p = Profile {
        status_pct: 100.0,
        retry_after_secs: 7,
        ..clean()
    };
    let px = start(p.clone(), up, 3, true).await;
    for _ in 0..4 {
        let mut s = TcpStream::connect(px.addr).await.unwrap();
        s.write_all(b"GET /v1/processes HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
            .await
            .expect("the proxy answers and closes")
            .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 429 ") || answer.starts_with("HTTP/1.1 503 "),
            "{answer}"
        );
        assert!(answer.contains("\r\nRetry-After: 7\r\n"), "{answer}");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 0);
    // Not in plain-HTTP mode: the proxy never answers for the endpoint.
    let px = start(p, up, 3, false).await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    roundtrip(&mut s, b"GET / HTTP/1.1\r\n\r\n").await;
}

#[tokio::test]
async fn blackhole_accepts_and_never_answers() {
    let (up, seen) = upstream(Up::Echo).await;
    let px = start(profile::by_name("blackhole").unwrap(), up, 1, false).await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    s.write_all(b"anyone there?").await.unwrap();
    let (n, how) = read_all(&mut s, Duration::from_secs(1)).await;
    assert_eq!((n, how), (0, "silent"));
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(px.link.up_bytes.load(Ordering::SeqCst), 13);
}

#[tokio::test]
async fn slow_server_delays_each_answer() {
    let (up, _) = upstream(Up::Echo).await;
    let px = start(
        Profile {
            server_delay_ms: (400, 400),
            ..clean()
        },
        up,
        1,
        false,
    )
    .await;
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    for _ in 0..2 {
        let rt = roundtrip(&mut s, b"request").await;
        assert!(rt >= Duration::from_millis(400), "answer after {rt:?}");
    }
    assert_eq!(px.log.summary().faults.get("slow_answer"), Some(&2));
}

#[tokio::test]
async fn flapping_link_goes_down_cutting_connections_then_comes_back() {
    let (up, _) = upstream(Up::Echo).await;
    let p = Profile {
        flap_up_secs: 0.6,
        flap_down_secs: 0.8,
        ..clean()
    };
    let px = start(p, up, 5, false).await;
    let mut held = TcpStream::connect(px.addr).await.unwrap();
    roundtrip(&mut held, b"before").await;
    // Within the first down period the held connection is reset…
    let (_, how) = read_all(&mut held, Duration::from_secs(3)).await;
    assert_eq!(how, "reset");
    // …new connections are refused while it is down…
    let mut s = TcpStream::connect(px.addr).await.unwrap();
    let _ = s.write_all(b"x").await;
    assert_eq!(read_all(&mut s, Duration::from_secs(1)).await.1, "reset");
    // …and it comes back up.
    let t = Instant::now();
    loop {
        let mut s = TcpStream::connect(px.addr).await.unwrap();
        let _ = s.write_all(b"back?").await;
        let mut buf = [0u8; 5];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(4), "link never came back");
    }
    let f = px.log.summary().faults;
    assert!(f.get("link_down").is_some_and(|n| *n >= 1));
    assert!(f.get("link_up").is_some_and(|n| *n >= 1));
}

#[test]
fn same_seed_and_profile_give_the_same_schedule() {
    for name in profile::NAMES {
        let p = profile::by_name(name).unwrap();
        let a: Vec<_> = (0..300).map(|n| plan_for(42, &p, true, 0, n)).collect();
        let b: Vec<_> = (0..300).map(|n| plan_for(42, &p, true, 0, n)).collect();
        assert_eq!(a, b, "{name}");
    }
    let p = profile::by_name("lossy").unwrap();
    let a: Vec<_> = (0..300).map(|n| plan_for(42, &p, false, 0, n)).collect();
    let c: Vec<_> = (0..300).map(|n| plan_for(43, &p, false, 0, n)).collect();
    let d: Vec<_> = (0..300).map(|n| plan_for(42, &p, false, 1, n)).collect();
    assert_ne!(a, c, "another seed, another schedule");
    assert_ne!(a, d, "another link, another schedule");
    let cuts = a
        .iter()
        .filter(|c| c.reset_up_after.is_some() || c.reset_down_after.is_some());
    let n = cuts.count();
    assert!(
        (110..190).contains(&n),
        "half of 300 connections cut, got {n}"
    );
    let f = profile::by_name("flapping").unwrap();
    let x = FlapSchedule::new(7, &f, 0, 50).unwrap().down_periods();
    assert_eq!(x, FlapSchedule::new(7, &f, 0, 50).unwrap().down_periods());
    assert_ne!(x, FlapSchedule::new(8, &f, 0, 50).unwrap().down_periods());
}

async fn cut_log(seed: u64) -> Vec<(u64, String, String)> {
    let (up, _) = upstream(Up::Echo).await;
    let p = Profile {
        cut_pct: 50.0,
        cut_max_bytes: 6_000,
        ..clean()
    };
    let px = start(p, up, seed, false).await;
    for _ in 0..16 {
        let mut s = TcpStream::connect(px.addr).await.unwrap();
        let _ = s.write_all(&vec![9u8; 8_000]).await;
        let _ = read_all(&mut s, Duration::from_millis(300)).await;
    }
    let mut v: Vec<_> = px
        .log
        .events()
        .into_iter()
        .map(|e| (e.conn, e.kind, e.detail))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_run_replayed_with_its_seed_injects_the_same_faults() {
    let a = cut_log(11).await;
    assert!(a.len() >= 3, "some connections are cut: {a:?}");
    assert_eq!(a, cut_log(11).await);
    assert_ne!(a, cut_log(12).await);
}
