//! The promises checked at the end of every seed, on the healed world: every capture the
//! devices reported saved is counted exactly once by the endpoint (once per citizen, the
//! rest recorded as duplicates) and none is lost; each device holds a verified receipt for
//! every capture and nothing else of what it sent (no part file, no key); quarantines only
//! for permanent reasons (this world injects none, so none at all).

use std::collections::{BTreeMap, BTreeSet};

use apoyo_sync::{ReceiptResult, State};
use rusqlite::OpenFlags;

use super::device::SimDevice;
use super::world::Shared;

/// What the endpoint recorded: capture id → result.
fn endpoint_supports(shared: &Shared) -> BTreeMap<String, String> {
    let path = shared.lock().endpoint.db_path();
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("endpoint database");
    let mut st = conn
        .prepare("SELECT capture_id, result FROM supports")
        .expect("supports");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// Checks the world; returns every violation found (empty: the seed is clean).
pub fn world(shared: &Shared, devices: &mut [SimDevice]) -> Vec<String> {
    let mut v = shared.lock().errors.clone();
    let quarantines = shared.lock().quarantines.clone();
    for (id, why) in &quarantines {
        v.push(format!(
            "capture {} quarantined for a transient cause: {why}",
            name(shared, id)
        ));
    }
    let supports = endpoint_supports(shared);
    let mut saved_ids = BTreeSet::new();
    let mut counted_per_citizen: BTreeMap<u32, u32> = BTreeMap::new();
    for d in devices.iter_mut() {
        device(shared, d, &supports, &mut v);
        for (id, citizen) in &d.saved {
            saved_ids.insert(id.to_string());
            if supports.get(&id.to_string()).map(String::as_str) == Some("counted") {
                *counted_per_citizen.entry(*citizen).or_default() += 1;
            }
        }
    }
    let citizens: BTreeSet<u32> = devices
        .iter()
        .flat_map(|d| d.saved.iter().map(|s| s.1))
        .collect();
    for c in citizens {
        let n = counted_per_citizen.get(&c).copied().unwrap_or(0);
        if n != 1 {
            v.push(format!("citizen {c} counted {n} times"));
        }
    }
    for id in supports.keys().filter(|id| !saved_ids.contains(*id)) {
        v.push(format!(
            "the endpoint holds a support no device saved: {id}"
        ));
    }
    v
}

fn name(shared: &Shared, id: &apoyo_sync::CaptureId) -> String {
    match shared.lock().names.get(&id.to_string()) {
        Some(n) => format!("c{n}"),
        None => id.to_string(),
    }
}

/// One device: each saved capture purged, with a verified receipt that says what the
/// endpoint recorded; nothing left of it on disk.
fn device(
    shared: &Shared,
    d: &mut SimDevice,
    supports: &BTreeMap<String, String>,
    v: &mut Vec<String>,
) {
    let store = d.store();
    let list = store.list().expect("list");
    let receipts = store.receipts().expect("receipts");
    for (id, _) in &d.saved {
        let n = name(shared, id);
        match list.iter().find(|c| c.id == *id) {
            None => v.push(format!("capture {n} saved on d{} is gone", d.idx)),
            Some(c) if c.state != State::Purged => v.push(format!(
                "capture {n} left {:?} ({:?}) after healing",
                c.state, c.reason
            )),
            Some(_) => {}
        }
        let endpoint = supports.get(&id.to_string());
        if endpoint.is_none() {
            v.push(format!("capture {n} lost: the endpoint never recorded it"));
        }
        match receipts.iter().find(|r| r.capture_id == *id) {
            None => v.push(format!("capture {n} has no receipt on d{}", d.idx)),
            Some(r) if !r.verified => v.push(format!("capture {n}'s receipt does not verify")),
            Some(r) => {
                let said = match r.result {
                    ReceiptResult::Counted => "counted",
                    ReceiptResult::Duplicate => "duplicate",
                };
                if endpoint.is_some_and(|e| e != said) {
                    v.push(format!(
                        "capture {n}: receipt says {said}, endpoint {endpoint:?}"
                    ));
                }
            }
        }
    }
    leftovers(d, v);
}

/// Nothing the device sent may remain: no part file, no capture key.
fn leftovers(d: &SimDevice, v: &mut Vec<String>) {
    let parts = std::fs::read_dir(d.dir.join("parts"))
        .map(|it| it.count())
        .unwrap_or(0);
    if parts > 0 {
        v.push(format!("d{} still holds {parts} part files", d.idx));
    }
    let conn = rusqlite::Connection::open_with_flags(
        d.dir.join("apoyo.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("device database");
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM capture_keys", [], |r| r.get(0))
        .expect("capture_keys");
    if keys > 0 {
        v.push(format!("d{} still holds {keys} capture keys", d.idx));
    }
}
