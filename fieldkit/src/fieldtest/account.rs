//! The figures of a field run, computed only from what is actually held: each device's store
//! (its queue rows and kept receipts) and journal (planned capture → capture id), and the
//! endpoint's database (`supports`, read-only). Nothing is assumed: a capture neither decided
//! by the endpoint nor still held by its device is lost; a citizen counted twice is counted
//! twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apoyo_sync::State;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::device::{self, Entry, Journal, Live};
use super::marks::{self, Attempt, DecisionAt};
use super::plan::Kind;
use super::setup::Device;
use super::{FieldConfig, FieldError};
use crate::proxy::{ConnRecord, FaultEvent, FaultLog};

/// The report (`--json` prints it as one line; the first fields are the documented ones).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub captured: u64,
    pub counted: u64,
    pub duplicates_expected: u64,
    pub duplicates_found: u64,
    pub quarantined: u64,
    pub pending: u64,
    pub lost: u64,
    pub double_counted: u64,
    pub wire_bytes: u64,
    pub payload_bytes: u64,
    pub retries: u64,
    pub drain_seconds: f64,
    /// Payload throughput over the drain time, divided by the links' uplink rate (null when
    /// the profile does not limit the rate).
    pub goodput_ratio: Option<f64>,
    pub seed: u64,
    pub profile: String,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    pub refused_locally: u64,
    pub goodput_kbps: f64,
    pub link_kbps: Option<f64>,
    pub links: u64,
    pub devices: u64,
    pub kills: u64,
    pub drained: bool,
    pub faults: BTreeMap<String, u64>,
    pub command: String,
}

/// What the HTML timeline draws, in milliseconds from the start of the run.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub span_ms: u64,
    pub devices: Vec<DeviceLane>,
    pub links: Vec<LinkLane>,
    pub faults: Vec<FaultEvent>,
    pub link_kbps: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceLane {
    pub index: usize,
    pub link: usize,
    pub captures: Vec<u64>,
    /// (when the endpoint decided, result or reason, whether the device keeps a verified
    /// receipt).
    pub commits: Vec<(u64, String, bool)>,
    pub kills: u64,
    /// Each exchange the device made (upload and commit attempts), with its outcome or fault.
    pub attempts: Vec<Attempt>,
    /// The engine's decision at the end of each attempt (retry, receipt, quarantine).
    pub decisions: Vec<DecisionAt>,
}

#[derive(Debug, Clone, Default)]
pub struct LinkLane {
    pub conns: Vec<ConnRecord>,
    /// (ms, device → endpoint bytes so far).
    pub series: Vec<(u64, u64)>,
}

/// One decided support at the endpoint.
#[derive(Debug, Clone)]
pub struct Decided {
    pub device_id: String,
    pub result: String,
    pub reason: String,
    pub counted_time: String,
    pub dup_key: Option<Vec<u8>>,
    /// Ciphertext bytes of its parts the endpoint keeps (0 when it kept none).
    pub part_bytes: u64,
}

fn open_ro(db: &Path) -> Result<Connection, FieldError> {
    Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| FieldError::io("endpoint database", e))
}

/// Every support the endpoint decided, by capture id.
pub fn endpoint_rows(db: &Path) -> Result<HashMap<String, Decided>, FieldError> {
    let conn = open_ro(db)?;
    let mut st = conn
        .prepare("SELECT s.capture_id, s.device_id, s.result, coalesce(s.reason, ''), s.counted_time, s.dup_key, \
                  (SELECT coalesce(sum(p.length), 0) FROM support_parts p WHERE p.capture_id = s.capture_id) \
                  FROM supports s")
        .map_err(|e| FieldError::io("endpoint database", e))?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Decided {
                    device_id: r.get(1)?,
                    result: r.get(2)?,
                    reason: r.get(3)?,
                    counted_time: r.get(4)?,
                    dup_key: r.get(5)?,
                    part_bytes: r.get::<_, i64>(6)?.max(0) as u64,
                },
            ))
        })
        .map_err(|e| FieldError::io("endpoint database", e))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(|e| FieldError::io("endpoint database", e))
}

/// Supports counted or recorded as duplicates, per device id (for the live display).
pub fn decided_by_device(db: &Path) -> Result<HashMap<String, u64>, FieldError> {
    let conn = open_ro(db)?;
    let mut st = conn
        .prepare("SELECT device_id, count(*) FROM supports WHERE result IN ('counted', 'duplicate') GROUP BY 1")
        .map_err(|e| FieldError::io("endpoint database", e))?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .map_err(|e| FieldError::io("endpoint database", e))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(|e| FieldError::io("endpoint database", e))
}

/// What `compute` reads.
pub struct Inputs<'a> {
    pub cfg: &'a FieldConfig,
    pub devices: &'a [Device],
    pub lives: &'a [Arc<Live>],
    pub endpoint_db: &'a Path,
    pub log: &'a FaultLog,
    /// (up, down) bytes per link, counted at the device-side sockets.
    pub wire: &'a [(u64, u64)],
    pub series: Vec<Vec<(u64, u64)>>,
    pub elapsed: Duration,
    pub t0: OffsetDateTime,
}

fn ms_since(t0: OffsetDateTime, t: OffsetDateTime) -> u64 {
    (t - t0).whole_milliseconds().max(0) as u64
}

/// Running tallies while walking the captures.
#[derive(Default)]
struct Tally {
    captured: u64,
    counted: u64,
    dup_found: u64,
    quarantined: BTreeMap<String, u64>,
    pending: u64,
    lost: u64,
    refused: u64,
    payload: u64,
    counted_per_citizen: HashMap<u32, u64>,
    shared_per_citizen: HashMap<u32, u64>,
}

/// Walks one device: its store rows and journal against the endpoint's rows.
fn device_tally(
    t: &mut Tally,
    d: &Device,
    ep: &HashMap<String, Decided>,
    t0: OffsetDateTime,
    lane: &mut DeviceLane,
) -> Result<(), FieldError> {
    let store = device::open_store(&d.dir)?;
    let journal = Journal::load(&d.dir)?;
    let rows: HashMap<String, apoyo_sync::CaptureInfo> = store
        .list()?
        .into_iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    let receipts: HashSet<String> = store
        .receipts()?
        .into_iter()
        .filter(|r| r.verified)
        .map(|r| r.capture_id.to_string())
        .collect();
    let citizen_of = citizens(&journal, d, t);
    let ids: HashSet<&String> = rows.keys().chain(citizen_of.keys()).collect();
    for id in ids {
        t.captured += 1;
        let row = rows.get(id);
        if let Some(r) = row {
            lane.captures.push(ms_since(t0, r.captured_at));
        }
        if let Some((c, Kind::Shared)) = citizen_of.get(id) {
            *t.shared_per_citizen.entry(*c).or_default() += 1;
        }
        let decided = ep.get(id);
        if let Some(dec) = decided {
            // What the endpoint keeps of it, or (a rejection keeps nothing) what the phone holds.
            t.payload += match dec.part_bytes {
                0 => row.map_or(0, |r| r.total_bytes),
                n => n,
            };
            let at = OffsetDateTime::parse(&dec.counted_time, &Rfc3339)
                .map(|x| ms_since(t0, x))
                .unwrap_or(0);
            let what = if dec.result == "rejected" {
                dec.reason.clone()
            } else {
                dec.result.clone()
            };
            lane.commits.push((at, what, receipts.contains(id)));
        }
        let state = row.map(|r| r.state);
        match (decided.map(|x| x.result.as_str()), state) {
            (Some("counted"), _) => {
                t.counted += 1;
                if let Some((c, _)) = citizen_of.get(id) {
                    *t.counted_per_citizen.entry(*c).or_default() += 1;
                }
            }
            (Some("duplicate"), _) => t.dup_found += 1,
            (_, Some(State::Quarantined)) => {
                let reason = row.and_then(|r| r.reason.clone()).unwrap_or_default();
                *t.quarantined.entry(reason).or_default() += 1;
            }
            (None, Some(State::Captured | State::Uploading)) => t.pending += 1,
            // Neither decided (counted or duplicate) nor still held: lost.
            _ => t.lost += 1,
        }
    }
    lane.captures.sort_unstable();
    lane.commits.sort_by_key(|c| c.0);
    Ok(())
}

/// Citizens counted more than once, from the journals and from the endpoint's duplicate keys.
fn double_counted(t: &Tally, ep: &HashMap<String, Decided>) -> u64 {
    let by_citizen: u64 = t
        .counted_per_citizen
        .values()
        .map(|n| n.saturating_sub(1))
        .sum();
    let mut per_key: HashMap<&[u8], u64> = HashMap::new();
    for d in ep.values().filter(|d| d.result == "counted") {
        if let Some(k) = &d.dup_key {
            *per_key.entry(k.as_slice()).or_default() += 1;
        }
    }
    let by_key: u64 = per_key.values().map(|n| n.saturating_sub(1)).sum();
    by_citizen.max(by_key)
}

/// Computes the report and the timeline.
pub fn compute(i: Inputs<'_>) -> Result<(Report, Timeline), FieldError> {
    let ep = endpoint_rows(i.endpoint_db)?;
    let mut t = Tally::default();
    let mut lanes = Vec::new();
    for d in i.devices {
        let mut lane = DeviceLane {
            index: d.index,
            link: d.link,
            kills: i.lives[d.index].kills.load(Ordering::Relaxed),
            ..Default::default()
        };
        device_tally(&mut t, d, &ep, i.t0, &mut lane)?;
        (lane.attempts, lane.decisions) = marks::on_timeline(&marks::load(&d.dir)?, i.t0);
        lanes.push(lane);
    }
    let (drained, drain_ms) = drain_time(&i);
    let drain_seconds = (drain_ms as f64 / 1000.0).max(0.001);
    let goodput_kbps = t.payload as f64 * 8.0 / drain_seconds / 1000.0;
    let link_kbps = i.cfg.profile.link_rate_kbps();
    let links = i.wire.len() as u64;
    let report = Report {
        captured: t.captured,
        counted: t.counted,
        duplicates_expected: t
            .shared_per_citizen
            .values()
            .map(|n| n.saturating_sub(1))
            .sum(),
        duplicates_found: t.dup_found,
        quarantined: t.quarantined.values().sum(),
        pending: t.pending,
        lost: t.lost,
        double_counted: double_counted(&t, &ep),
        wire_bytes: i.wire.iter().map(|(u, d)| u + d).sum(),
        payload_bytes: t.payload,
        retries: i
            .lives
            .iter()
            .map(|l| l.retries.load(Ordering::Relaxed))
            .sum(),
        drain_seconds: (drain_seconds * 1000.0).round() / 1000.0,
        goodput_ratio: link_kbps
            .filter(|_| links > 0)
            .map(|r| ((goodput_kbps / (r * links as f64)) * 1000.0).round() / 1000.0),
        seed: i.cfg.seed,
        profile: i.cfg.profile.name.clone(),
        quarantined_by_reason: t.quarantined.clone(),
        refused_locally: t.refused,
        goodput_kbps: (goodput_kbps * 10.0).round() / 10.0,
        link_kbps,
        links,
        devices: i.devices.len() as u64,
        kills: i
            .lives
            .iter()
            .map(|l| l.kills.load(Ordering::Relaxed))
            .sum(),
        drained,
        faults: i.log.summary().faults,
        command: i.cfg.command.clone(),
    };
    let timeline = timeline(&i, lanes, link_kbps);
    Ok((report, timeline))
}

/// The timeline the HTML page draws.
fn timeline(i: &Inputs<'_>, lanes: Vec<DeviceLane>, link_kbps: Option<f64>) -> Timeline {
    let conns = i.log.connections();
    Timeline {
        span_ms: i.elapsed.as_millis() as u64,
        devices: lanes,
        links: i
            .series
            .iter()
            .enumerate()
            .map(|(n, series)| LinkLane {
                conns: conns
                    .iter()
                    .filter(|c| c.link == n as u64)
                    .cloned()
                    .collect(),
                series: series.clone(),
            })
            .collect(),
        faults: i.log.events(),
        link_kbps,
    }
}

/// Whether every device drained, and when the last one did (or the run's length).
fn drain_time(i: &Inputs<'_>) -> (bool, u64) {
    let drained = i.lives.iter().all(|l| l.drained.load(Ordering::Relaxed));
    let ms = if drained {
        i.lives
            .iter()
            .map(|l| l.drained_at_ms.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    } else {
        i.elapsed.as_millis() as u64
    };
    (drained, ms)
}

/// Which planned citizen each journaled capture id is; counts the local refusals.
fn citizens(journal: &Journal, d: &Device, t: &mut Tally) -> HashMap<String, (u32, Kind)> {
    let mut citizen_of = HashMap::new();
    for (i, e) in &journal.entries {
        let Some(p) = d.plan.captures.get(*i) else {
            continue;
        };
        match e {
            Entry::Captured(id) => {
                citizen_of.insert(id.clone(), (p.citizen, p.kind));
            }
            Entry::Refused(_) => t.refused += 1,
        }
    }
    citizen_of
}
