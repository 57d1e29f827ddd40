//! The proxy's random faults over real TCP: connections cut (`--cut-pct`, the `lossy`
//! profile) and stalled (`--stall-pct`) at a random byte count, each with the control run that
//! fails without it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use apoyo_fieldkit::profile::Profile;
use common::{Up, clean, read_all, start, upstream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends 20 000 bytes on each of `conns` connections; how each ended and what the upstream got.
async fn send_each(p: Profile, conns: usize) -> (Vec<&'static str>, u64, Vec<String>) {
    let (up, seen) = upstream(Up::Sink).await;
    let px = start(p, up, 9, false).await;
    let mut ends = Vec::new();
    for _ in 0..conns {
        let mut s = TcpStream::connect(px.addr).await.unwrap();
        let _ = s.write_all(&vec![4u8; 20_000]).await;
        ends.push(read_all(&mut s, Duration::from_millis(600)).await.1);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kinds = px.log.events().into_iter().map(|e| e.kind).collect();
    (ends, seen.received.load(Ordering::SeqCst), kinds)
}

#[tokio::test]
async fn cut_pct_resets_connections_at_a_random_byte_count() {
    let p = Profile {
        cut_pct: 100.0,
        cut_max_bytes: 3_000,
        ..clean()
    };
    let (ends, received, kinds) = send_each(p, 4).await;
    // Every connection is planned a cut: three in four on the way up, reset after at most 3000
    // bytes; the others on the way down, where a sink sends nothing, so they stay open
    // ("silent"). Seed 9 cuts at least one on the way up.
    assert!(
        ends.iter().all(|e| *e == "reset" || *e == "silent"),
        "{ends:?}"
    );
    let up_cuts = kinds.iter().filter(|k| *k == "reset").count();
    assert!(up_cuts >= 1, "{kinds:?}");
    assert!(
        received <= 3_000 * 4 + 20_000 * (4 - up_cuts as u64),
        "at most 3000 bytes of each cut connection reach the upstream: {received}"
    );
    // Control: without cuts every byte arrives and no connection is reset.
    let (ends, received, _) = send_each(clean(), 4).await;
    assert_eq!(received, 80_000);
    assert!(ends.iter().all(|e| *e == "silent"), "{ends:?}");
}

#[tokio::test]
async fn stall_pct_stops_forwarding_at_a_random_byte_count_without_a_reset() {
    let p = Profile {
        stall_pct: 100.0,
        cut_max_bytes: 3_000,
        ..clean()
    };
    let (ends, received, kinds) = send_each(p, 6).await;
    assert!(ends.iter().all(|e| *e == "silent"), "never reset: {ends:?}");
    let up_stalls = kinds.iter().filter(|k| *k == "stall").count() as u64;
    assert!(up_stalls >= 1, "{kinds:?}");
    // A connection stalled on the way up delivers at most 3000 of its 20 000 bytes.
    assert!(
        received <= 3_000 * up_stalls + 20_000 * (6 - up_stalls),
        "{received} with {up_stalls} stalled up"
    );
    assert!(received < 120_000);
}
