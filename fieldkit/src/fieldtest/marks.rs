//! Per-attempt marks of one device, for the report's timeline: each exchange its sync engine
//! makes with the endpoint through the device's link (create an upload, PATCH a part, HEAD its
//! offset, commit), when it started and ended and how it ended (the HTTP status, or the
//! transport fault the device met); and each outcome the engine reports for a capture
//! (rescheduled with the failure that ended the attempt, committed with its verified receipt,
//! quarantined with the reason).
//!
//! Exchanges are seen at the engine's transport seam ([`RecordingTransport`] wraps the device's
//! `HttpTransport`); outcomes come from the engine's own state-change events
//! ([`MarkControl`] is the run's `RunControl`: it never holds a run, it only listens). The
//! core needed no new reporting for this.
//!
//! Each mark is one JSON line appended to the device's `marks.jsonl` with a single write, so a
//! device process SIGKILLed mid-run loses at most the line being written. Times are wall-clock
//! Unix milliseconds, so a device process and the orchestrator agree on them. No payload, token
//! or personal data is recorded: steps, statuses, fault texts, capture ids and reason codes.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use apoyo_sync::State;
use apoyo_sync::testkit::sync::control::Changed;
use apoyo_sync::testkit::sync::transport::{Method, Request, SendFuture, Transport};
use apoyo_sync::testkit::sync::{CaptureChange, Hold, RunControl};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::FieldError;

/// The marks file inside a device's folder.
pub const MARKS: &str = "marks.jsonl";

/// Which protocol exchange an attempt was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `GET /v1/processes`: the catalog refresh at the start of a run.
    Catalog,
    /// `POST /v1/uploads`: a part's tus upload is created.
    Create,
    /// `HEAD /v1/uploads/…`: how much of a part the endpoint holds (a resume).
    Offset,
    /// `PATCH /v1/uploads/…`: part bytes sent.
    Patch,
    /// `PUT /v1/supports/…`: the signed commit; the answer carries the signed receipt.
    Commit,
    Other,
}

impl Step {
    fn of(method: Method, path: &str) -> Step {
        match method {
            Method::Get if path.starts_with("/v1/processes") => Step::Catalog,
            Method::Post if path.starts_with("/v1/uploads") => Step::Create,
            Method::Head => Step::Offset,
            Method::Patch => Step::Patch,
            Method::Put if path.starts_with("/v1/supports/") => Step::Commit,
            _ => Step::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Catalog => "catalog",
            Step::Create => "create",
            Step::Offset => "offset",
            Step::Patch => "patch",
            Step::Commit => "commit",
            Step::Other => "other",
        }
    }
}

/// What the engine decided for a capture at the end of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The attempt failed; the capture is tried again later (`detail`: the failure).
    Retry,
    /// The signed receipt was verified and recorded (`detail`: counted or duplicate).
    Receipt,
    /// Quarantined (`detail`: the reason); kept on the phone.
    Quarantined,
}

/// One mark, as written to `marks.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mark", rename_all = "snake_case")]
pub enum Mark {
    /// One exchange with the endpoint: an upload or commit attempt.
    Exchange {
        start: i64,
        end: i64,
        step: Step,
        /// The HTTP status, or the transport fault (`connection broken: …`, `timed out`).
        outcome: String,
        /// A 2xx answer.
        ok: bool,
    },
    /// The engine's decision for a capture.
    Decision {
        at: i64,
        capture: String,
        what: Decision,
        detail: String,
    },
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Appends marks to one device's `marks.jsonl`.
#[derive(Debug)]
pub struct Recorder {
    file: Mutex<std::fs::File>,
}

impl Recorder {
    pub fn open(dir: &Path) -> Result<Arc<Recorder>, FieldError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(MARKS))
            .map_err(|e| FieldError::io("marks", e))?;
        Ok(Arc::new(Recorder {
            file: Mutex::new(file),
        }))
    }

    /// Writes one mark (best effort: a full disk must not stop the device).
    pub fn write(&self, m: &Mark) {
        let Ok(mut line) = serde_json::to_vec(m) else {
            return;
        };
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(&line);
    }
}

/// Reads a device's marks; a line torn by a kill is skipped.
pub fn load(dir: &Path) -> Result<Vec<Mark>, FieldError> {
    let f = match std::fs::File::open(dir.join(MARKS)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FieldError::io("marks", e)),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| FieldError::io("marks", e))?;
        if let Ok(m) = serde_json::from_str(&line) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Exchanges per step: (all, failed), for the report's lane labels and tests.
pub fn tally(marks: &[Mark]) -> BTreeMap<Step, (u64, u64)> {
    let mut t: BTreeMap<Step, (u64, u64)> = BTreeMap::new();
    for m in marks {
        if let Mark::Exchange { step, ok, .. } = m {
            let e = t.entry(*step).or_default();
            e.0 += 1;
            e.1 += u64::from(!ok);
        }
    }
    t
}

/// The device's transport, recording each exchange.
pub struct RecordingTransport<T> {
    inner: T,
    rec: Arc<Recorder>,
}

impl<T: Transport> RecordingTransport<T> {
    pub fn new(inner: T, rec: Arc<Recorder>) -> Self {
        RecordingTransport { inner, rec }
    }
}

impl<T: Transport> Transport for RecordingTransport<T> {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        let step = Step::of(req.method, &req.path);
        Box::pin(async move {
            let start = now_ms();
            let r = self.inner.send(req, limit).await;
            let (outcome, ok) = match &r {
                Ok(resp) => (resp.status.to_string(), (200..300).contains(&resp.status)),
                Err(e) => (e.to_string(), false),
            };
            self.rec.write(&Mark::Exchange {
                start,
                end: now_ms(),
                step,
                outcome,
                ok,
            });
            r
        })
    }
}

/// The run's control: never holds the run; records the engine's decision for each capture.
pub struct MarkControl {
    rec: Arc<Recorder>,
}

impl MarkControl {
    pub fn new(rec: Arc<Recorder>) -> Arc<MarkControl> {
        Arc::new(MarkControl { rec })
    }
}

impl RunControl for MarkControl {
    fn hold(&self) -> Option<Hold> {
        None
    }

    fn hold_for(&self, _hold: Hold) {}

    fn changed(&self) -> Changed<'_> {
        // Nothing ever changes a field device's hold: the run waits its full backoff.
        Box::pin(std::future::pending())
    }

    fn capture_changed(&self, c: &CaptureChange) {
        let what = match c.state {
            _ if c.next_attempt_at.is_some() => Decision::Retry,
            State::Committed => Decision::Receipt,
            State::Quarantined => Decision::Quarantined,
            // Uploading (the first attempt starts: its exchanges are marked) and Purged (the
            // receipt is already marked).
            _ => return,
        };
        self.rec.write(&Mark::Decision {
            at: now_ms(),
            capture: c.id.to_string(),
            what,
            detail: c.reason.clone().unwrap_or_default(),
        });
    }
}

/// One exchange as the timeline draws it, in milliseconds from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub start_ms: u64,
    pub end_ms: u64,
    pub step: Step,
    pub outcome: String,
    pub ok: bool,
}

/// One engine decision as the timeline draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionAt {
    pub at_ms: u64,
    pub what: Decision,
    pub detail: String,
}

/// A device's marks on the run's time axis (`t0`: the start of the run), each list in order.
pub fn on_timeline(marks: &[Mark], t0: OffsetDateTime) -> (Vec<Attempt>, Vec<DecisionAt>) {
    let base = (t0.unix_timestamp_nanos() / 1_000_000) as i64;
    let rel = |t: i64| (t - base).max(0) as u64;
    let (mut attempts, mut decisions) = (Vec::new(), Vec::new());
    for m in marks {
        match m {
            Mark::Exchange {
                start,
                end,
                step,
                outcome,
                ok,
            } => attempts.push(Attempt {
                start_ms: rel(*start),
                end_ms: rel(*end),
                step: *step,
                outcome: outcome.clone(),
                ok: *ok,
            }),
            Mark::Decision {
                at, what, detail, ..
            } => decisions.push(DecisionAt {
                at_ms: rel(*at),
                what: *what,
                detail: detail.clone(),
            }),
        }
    }
    attempts.sort_by_key(|a| a.start_ms);
    decisions.sort_by_key(|d| d.at_ms);
    (attempts, decisions)
}
