//! One proxied connection: refuse it, blackhole it, answer it (plain-HTTP mode), or relay it
//! through the link's delay line, injecting its planned faults. Payload bytes are never read
//! for meaning nor altered: they are only counted, delayed, paced, cut or held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use super::Shared;
use super::link::Link;
use super::log::{ConnRecord, Dir};
use crate::schedule::{ConnPlan, plan_for};

/// How a direction (or the connection) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    Reset,
    Stalled,
    Error,
    LinkDown,
}

/// Segment size when a direction is rate-limited (an Ethernet MSS): pacing stays smooth.
const PACED_SEGMENT: usize = 1448;
const FREE_SEGMENT: usize = 16 * 1024;
/// Segments in flight in one direction's delay line.
const LINE_DEPTH: usize = 256;

/// Everything one connection needs.
struct Ctx {
    shared: Arc<Shared>,
    link: Arc<Link>,
    plan: ConnPlan,
    n: u64,
    /// Set when device bytes went up since the last answer started (slow-server).
    asked: AtomicBool,
    up: AtomicU64,
    down: AtomicU64,
}

impl Ctx {
    /// Counts bytes at the device-side socket, for the link and for this connection.
    fn count(&self, dir: Dir, n: usize) {
        self.link.count(dir, n);
        let c = match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn fault(&self, kind: &str, detail: String) {
        self.shared.log.fault(self.link.index, self.n, kind, detail);
    }
}

pub(super) async fn handle(client: TcpStream, shared: Arc<Shared>, link: Arc<Link>, n: u64) {
    let plan = plan_for(
        shared.seed,
        &shared.profile,
        shared.http_mode,
        link.index,
        n,
    );
    let ctx = Ctx {
        shared,
        link,
        plan,
        n,
        asked: AtomicBool::new(false),
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
    };
    let opened_ms = ctx.shared.log.elapsed_ms();
    ctx.shared.log.opened();
    let fault = serve(client, &ctx).await;
    ctx.shared.log.closed(ConnRecord {
        link: ctx.link.index,
        conn: n,
        opened_ms,
        closed_ms: ctx.shared.log.elapsed_ms(),
        up_bytes: ctx.up.load(Ordering::Relaxed),
        down_bytes: ctx.down.load(Ordering::Relaxed),
        fault,
    });
}

fn reset(stream: &TcpStream) {
    // A zero linger makes the close an RST; failure leaves an ordinary close, still a cut.
    let _ = stream.set_zero_linger();
}

async fn serve(mut client: TcpStream, ctx: &Ctx) -> Option<String> {
    if ctx.link.is_down() {
        ctx.fault("refused", "link down".into());
        reset(&client);
        return Some("link_down".into());
    }
    if ctx.plan.refuse {
        ctx.fault("refused", String::new());
        reset(&client);
        return Some("refused".into());
    }
    if ctx.plan.blackhole {
        ctx.fault("blackhole", "accepted, never answered".into());
        swallow(&mut client, ctx, None).await;
        return Some("blackhole".into());
    }
    if let Some(code) = ctx.plan.status {
        answer_status(&mut client, ctx, code).await;
        return Some(format!("status_{code}"));
    }
    let upstream = match TcpStream::connect(ctx.shared.upstream).await {
        Ok(s) => s,
        Err(e) => {
            ctx.fault("upstream_unreachable", e.kind().to_string());
            reset(&client);
            return Some("upstream_unreachable".into());
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    relay(client, upstream, ctx).await
}

/// Reads and discards what the device sends until it closes (or `limit` passes).
async fn swallow(client: &mut TcpStream, ctx: &Ctx, limit: Option<Duration>) {
    let mut buf = vec![0u8; FREE_SEGMENT];
    let drain = async {
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
            ctx.count(Dir::Up, n);
        }
    };
    match limit {
        Some(d) => {
            let _ = timeout(d, drain).await;
        }
        None => drain.await,
    }
}

/// Plain-HTTP mode: once the request has started arriving (its bytes are not parsed), answer
/// `code` with `Retry-After` and close.
async fn answer_status(client: &mut TcpStream, ctx: &Ctx, code: u16) {
    let mut buf = vec![0u8; FREE_SEGMENT];
    match timeout(Duration::from_secs(30), client.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => {
            ctx.count(Dir::Up, n);
        }
        _ => return,
    }
    let secs = ctx.shared.profile.retry_after_secs;
    ctx.fault(&format!("status_{code}"), format!("retry_after={secs}"));
    let reason = if code == 429 {
        "Too Many Requests"
    } else {
        "Service Unavailable"
    };
    let answer = format!(
        "HTTP/1.1 {code} {reason}\r\nRetry-After: {secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if client.write_all(answer.as_bytes()).await.is_ok() {
        ctx.count(Dir::Down, answer.len());
        let _ = client.shutdown().await;
        // Let the rest of the request arrive so the close is not a reset.
        swallow(client, ctx, Some(Duration::from_secs(2))).await;
    }
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream, ctx: &Ctx) -> Option<String> {
    let mut link_down = ctx.link.watch_down();
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let up = direction(Dir::Up, &mut cr, &mut uw, ctx);
        let down = direction(Dir::Down, &mut ur, &mut cw, ctx);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                e = &mut up, if !up_done => match e {
                    End::Eof => up_done = true,
                    other => break other,
                },
                e = &mut down, if !down_done => match e {
                    End::Eof => down_done = true,
                    other => break other,
                },
                _ = link_down.wait_for(|d| *d) => {
                    ctx.fault("reset", "link down".into());
                    break End::LinkDown;
                }
            }
            if up_done && down_done {
                break End::Eof;
            }
        }
    };
    match end {
        End::Eof => None,
        End::Error => Some("closed_by_peer".into()),
        End::Stalled => Some("stall".into()),
        End::Reset | End::LinkDown => {
            reset(&client);
            reset(&upstream);
            Some(
                if end == End::Reset {
                    "reset"
                } else {
                    "link_down"
                }
                .into(),
            )
        }
    }
}

/// One direction: a reader paces segments onto the link and stamps when each arrives at the
/// far end; a writer releases them at that time, applying the planned cut or stall.
async fn direction<R, W>(dir: Dir, rd: &mut R, wr: &mut W, ctx: &Ctx) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(LINE_DEPTH);
    let reader = read_side(dir, rd, tx, ctx);
    let writer = write_side(dir, wr, rx, ctx);
    tokio::pin!(reader, writer);
    let mut reader_done = false;
    loop {
        tokio::select! {
            r = &mut reader, if !reader_done => {
                if !r {
                    return End::Error;
                }
                reader_done = true;
            }
            w = &mut writer => return w,
        }
    }
}

/// Returns false on a read error (the peer reset), true at end of stream.
async fn read_side<R: AsyncRead + Unpin>(
    dir: Dir,
    rd: &mut R,
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
    ctx: &Ctx,
) -> bool {
    let p = &ctx.shared.profile;
    let seg = if ctx.link.limited(dir) {
        PACED_SEGMENT
    } else {
        FREE_SEGMENT
    };
    let mut buf = vec![0u8; seg];
    let mut rng = fastrand::Rng::with_seed(ctx.plan.segment_seed ^ dir as u64);
    let mut last_due = Instant::now();
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => return true,
            Ok(n) => n,
            Err(_) => return false,
        };
        if dir == Dir::Up {
            ctx.count(Dir::Up, n);
            ctx.asked.store(true, Ordering::Relaxed);
        }
        let sent = ctx.link.transmit(dir, n);
        sleep_until(sent).await;
        let mut extra = p.delay_ms;
        if p.jitter_ms > 0 {
            extra += rng.u64(0..=p.jitter_ms);
        }
        if p.loss_pct > 0.0 && rng.f64() * 100.0 < p.loss_pct {
            ctx.fault(
                "loss",
                format!("dir={} retransmit_after_ms={}", dir.name(), p.rto_ms()),
            );
            extra += p.rto_ms();
        }
        let (lo, hi) = p.server_delay_ms;
        if dir == Dir::Down && hi > 0 && ctx.asked.swap(false, Ordering::Relaxed) {
            let wait = rng.u64(lo..=hi.max(lo));
            ctx.fault("slow_answer", format!("first_byte_after_ms={wait}"));
            extra += wait;
        }
        let due = (sent + Duration::from_millis(extra)).max(last_due);
        last_due = due;
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            return true;
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    dir: Dir,
    wr: &mut W,
    mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
    ctx: &Ctx,
) -> End {
    let (reset_after, stall_after) = match dir {
        Dir::Up => (ctx.plan.reset_up_after, ctx.plan.stall_up_after),
        Dir::Down => (ctx.plan.reset_down_after, ctx.plan.stall_down_after),
    };
    let mut sent = 0u64;
    let mut stalled = false;
    while let Some((due, data)) = rx.recv().await {
        sleep_until(due).await;
        if stalled {
            continue;
        }
        let mut take = data.len();
        let mut then = End::Eof;
        if let Some(limit) = reset_after
            && sent + take as u64 >= limit
        {
            take = (limit - sent) as usize;
            then = End::Reset;
        } else if let Some(limit) = stall_after
            && sent + take as u64 >= limit
        {
            take = (limit - sent) as usize;
            then = End::Stalled;
        }
        if wr.write_all(&data[..take]).await.is_err() || wr.flush().await.is_err() {
            return End::Error;
        }
        sent += take as u64;
        if dir == Dir::Down {
            ctx.count(Dir::Down, take);
        }
        match then {
            End::Reset => {
                ctx.fault("reset", format!("dir={} after_bytes={sent}", dir.name()));
                return End::Reset;
            }
            End::Stalled => {
                ctx.fault("stall", format!("dir={} after_bytes={sent}", dir.name()));
                stalled = true;
            }
            _ => {}
        }
    }
    if stalled {
        // The device gave up on the stalled connection: close it, without a reset.
        return End::Stalled;
    }
    let _ = wr.shutdown().await;
    End::Eof
}
