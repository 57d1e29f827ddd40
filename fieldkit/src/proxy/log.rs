//! What the proxy did: one line per injected fault (timestamped, written as it happens), a
//! record per connection, byte counts per link, and the summary printed on Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Kept in memory for the report; beyond this the log file still gets every line.
const MAX_KEPT: usize = 200_000;

/// A direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Device → endpoint.
    Up,
    /// Endpoint → device.
    Down,
}

impl Dir {
    pub fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultEvent {
    /// Milliseconds since the log was created.
    pub at_ms: u64,
    pub link: u64,
    pub conn: u64,
    /// `refused`, `blackhole`, `reset`, `stall`, `status_429`, `status_503`, `link_down`,
    /// `link_up`, `loss`, `slow_answer`.
    pub kind: String,
    pub detail: String,
}

/// One connection, as the device saw it through the proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnRecord {
    pub link: u64,
    pub conn: u64,
    pub opened_ms: u64,
    pub closed_ms: u64,
    /// Bytes read from the device.
    pub up_bytes: u64,
    /// Bytes written to the device.
    pub down_bytes: u64,
    /// The connection-ending fault, if any (`reset`, `refused`, `stall`, …).
    pub fault: Option<String>,
}

/// Totals for the Ctrl-C summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub connections: u64,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub faults: BTreeMap<String, u64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connections {}  bytes up {}  bytes down {}  faults",
            self.connections, self.up_bytes, self.down_bytes
        )?;
        if self.faults.is_empty() {
            return write!(f, " none");
        }
        for (k, v) in &self.faults {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Inner {
    events: Vec<FaultEvent>,
    conns: Vec<ConnRecord>,
    summary: Summary,
}

/// The proxy's log, shared by every link of a run.
pub struct FaultLog {
    start: Instant,
    inner: Mutex<Inner>,
    sink: Mutex<Option<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for FaultLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultLog").finish_non_exhaustive()
    }
}

impl FaultLog {
    /// A log that writes one line per fault to `sink` (e.g. stderr or a file), if given.
    pub fn new(sink: Option<Box<dyn Write + Send>>) -> FaultLog {
        FaultLog {
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
            sink: Mutex::new(sink),
        }
    }

    /// When the log (and so the run) started.
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not stop the log: the data is plain counters and lists.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records and writes one fault line.
    pub fn fault(&self, link: u64, conn: u64, kind: &str, detail: String) {
        let at_ms = self.elapsed_ms();
        let stamp = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| format!("+{at_ms}ms"));
        {
            let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = sink.as_mut() {
                // The log is best effort: a full disk must not stop the proxy.
                let _ = writeln!(w, "{stamp} link={link} conn={conn} fault={kind} {detail}");
                let _ = w.flush();
            }
        }
        let mut g = self.lock();
        *g.summary.faults.entry(kind.to_string()).or_default() += 1;
        if g.events.len() < MAX_KEPT {
            g.events.push(FaultEvent {
                at_ms,
                link,
                conn,
                kind: kind.to_string(),
                detail,
            });
        }
    }

    pub(crate) fn opened(&self) {
        self.lock().summary.connections += 1;
    }

    pub(crate) fn closed(&self, rec: ConnRecord) {
        let mut g = self.lock();
        g.summary.up_bytes += rec.up_bytes;
        g.summary.down_bytes += rec.down_bytes;
        if g.conns.len() < MAX_KEPT {
            g.conns.push(rec);
        }
    }

    /// Every fault so far, in order.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.lock().events.clone()
    }

    /// Every closed connection so far.
    pub fn connections(&self) -> Vec<ConnRecord> {
        self.lock().conns.clone()
    }

    /// Totals so far (bytes of closed connections; see `Link` for live counters).
    pub fn summary(&self) -> Summary {
        self.lock().summary.clone()
    }

    /// Faults so far, excluding `link_up` (not a fault: the end of one).
    pub fn fault_count(&self) -> u64 {
        self.lock()
            .summary
            .faults
            .iter()
            .filter(|(k, _)| k.as_str() != "link_up")
            .map(|(_, v)| v)
            .sum()
    }
}
