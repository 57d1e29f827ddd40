//! One link (one cell, one phone's radio): the rate each direction drains at, shared by every
//! connection on it; whether it is down (flapping); and the bytes counted at the device-side
//! sockets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::log::Dir;

/// A link's shared state.
#[derive(Debug)]
pub struct Link {
    pub index: u64,
    up_kbps: Option<f64>,
    down_kbps: Option<f64>,
    /// When each direction's transmitter is next free (up, down).
    next_free: Mutex<[Instant; 2]>,
    /// Bytes read from devices on this link.
    pub up_bytes: AtomicU64,
    /// Bytes written to devices on this link.
    pub down_bytes: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    down: watch::Sender<bool>,
}

impl Link {
    pub fn new(index: u64, up_kbps: Option<f64>, down_kbps: Option<f64>) -> Link {
        let now = Instant::now();
        Link {
            index,
            up_kbps: up_kbps.filter(|r| *r > 0.0),
            down_kbps: down_kbps.filter(|r| *r > 0.0),
            next_free: Mutex::new([now, now]),
            up_bytes: AtomicU64::new(0),
            down_bytes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            down: watch::channel(false).0,
        }
    }

    /// Whether a direction is rate-limited.
    pub fn limited(&self, dir: Dir) -> bool {
        self.rate(dir).is_some()
    }

    fn rate(&self, dir: Dir) -> Option<f64> {
        match dir {
            Dir::Up => self.up_kbps,
            Dir::Down => self.down_kbps,
        }
    }

    /// Puts `len` bytes on the link's transmitter for `dir`; returns when their last bit has
    /// left (now when the direction is unlimited). Connections on one link queue behind each
    /// other, as on one radio.
    pub fn transmit(&self, dir: Dir, len: usize) -> Instant {
        let now = Instant::now();
        let Some(kbps) = self.rate(dir) else {
            return now;
        };
        let busy = Duration::from_secs_f64(len as f64 * 8.0 / (kbps * 1000.0));
        let mut g = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut g[dir as usize];
        let end = (*slot).max(now) + busy;
        *slot = end;
        end
    }

    pub(crate) fn count(&self, dir: Dir, n: usize) {
        let c = match dir {
            Dir::Up => &self.up_bytes,
            Dir::Down => &self.down_bytes,
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes counted at the device-side sockets, both directions.
    pub fn wire_bytes(&self) -> u64 {
        self.up_bytes.load(Ordering::Relaxed) + self.down_bytes.load(Ordering::Relaxed)
    }

    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Resolves when the link goes down.
    pub(crate) fn watch_down(&self) -> watch::Receiver<bool> {
        self.down.subscribe()
    }
}
