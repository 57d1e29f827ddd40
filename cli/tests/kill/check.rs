//! The promises the kill loops check: after every kill (nothing lost, nothing claimed sent
//! that the endpoint lacks, nothing counted twice) and at the end (every capture counted
//! exactly once, nothing left on the device, every receipt verifies).

use std::collections::{BTreeMap, BTreeSet};

use super::view::{DeviceView, EndpointView};
use super::world::{Device, World};

/// Where a device kill landed, read from what it left on disk against what was there before
/// the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// A capture's parts were being uploaded: some upload moved this round and the capture's
    /// parts were not all complete at the endpoint.
    Upload,
    /// Every part was uploaded; the commit was being built or was in flight, not yet recorded.
    CommitSent,
    /// The endpoint recorded the commit (the support is counted) but the device had not yet
    /// recorded the receipt: the answer was in flight or being verified.
    CommitRecorded,
    /// The receipt was recorded (state `committed`) and the purge had not finished: the keys
    /// were still there, or the part file was not yet removed.
    Purge,
    /// Anywhere else: start-up, opening the store, the catalog refresh, resuming (HEAD).
    Other,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Upload,
        Phase::CommitSent,
        Phase::CommitRecorded,
        Phase::Purge,
        Phase::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Upload => "mid-upload",
            Phase::CommitSent => "mid-commit, not yet recorded by the endpoint",
            Phase::CommitRecorded => "mid-commit, recorded by the endpoint, receipt not yet kept",
            Phase::Purge => "between receipt and purge (or inside the purge)",
            Phase::Other => "elsewhere (start-up, open, catalog, resume)",
        }
    }
}

/// Classifies a kill by the state it left (`after`) against the state before the round.
pub fn classify(
    dev_before: &DeviceView,
    ep_before: &EndpointView,
    dev: &DeviceView,
    ep: &EndpointView,
) -> Phase {
    let before_receipted: BTreeSet<&String> = dev_before.receipts.keys().collect();
    let new_receipt = |id: &String| !before_receipted.contains(id);
    let purging = dev.states.iter().any(|(id, s)| {
        new_receipt(id) && (s == "committed" || (s == "purged" && dev.files.contains(id)))
    });
    if purging {
        return Phase::Purge;
    }
    let unacknowledged = ep
        .supports
        .keys()
        .any(|id| !ep_before.supports.contains_key(id) && !dev.receipts.contains_key(id));
    if unacknowledged {
        return Phase::CommitRecorded;
    }
    for (capture, (complete, with_upload)) in ep.moved_since(ep_before) {
        if ep.supports.contains_key(&capture) {
            continue;
        }
        let parts = dev.parts.get(&capture).copied().unwrap_or(0);
        return if complete == parts && with_upload == parts {
            Phase::CommitSent
        } else {
            Phase::Upload
        };
    }
    Phase::Other
}

/// The checks after each kill, before anything reopens the device store. `known` gathers
/// every capture id ever seen on the device; none may disappear.
pub fn after_kill(
    known: &mut BTreeSet<String>,
    dev: &DeviceView,
    ep_before: &EndpointView,
    ep: &EndpointView,
    at: &str,
) {
    for id in known.iter() {
        assert!(dev.states.contains_key(id), "{at}: capture {id} lost");
    }
    known.extend(dev.states.keys().cloned());
    for (id, state) in &dev.states {
        match state.as_str() {
            "captured" | "uploading" => {
                assert!(dev.files.contains(id), "{at}: pending {id} lost its file");
                assert!(dev.keys.contains(id), "{at}: pending {id} lost its keys");
            }
            "committed" | "purged" => {
                let r = dev.receipts.get(id);
                assert!(
                    matches!(r, Some((result, true)) if result == "counted"),
                    "{at}: {id} is {state} with receipt {r:?}"
                );
                assert!(
                    ep.supports.contains_key(id),
                    "{at}: the device holds a receipt for {id}, the endpoint has no support"
                );
                if state == "purged" {
                    assert!(!dev.keys.contains(id), "{at}: purged {id} kept its keys");
                }
            }
            other => panic!("{at}: capture {id} is {other}"),
        }
    }
    for (id, result) in &ep.supports {
        assert_eq!(result, "counted", "{at}: support {id}");
    }
    for id in ep_before.supports.keys() {
        assert!(ep.supports.contains_key(id), "{at}: support {id} vanished");
    }
}

/// The end state: figures of the exactly-once check.
#[derive(Debug, Default)]
pub struct Final {
    pub captures: usize,
    pub counted: u64,
    pub lost: usize,
    pub doubled: u64,
}

/// After a drained sync of every device: every capture counted exactly once, nothing held on
/// a device, every receipt kept and verified, and the endpoint's own stats agree.
pub fn exactly_once(w: &World, devices: &[&Device], known: &BTreeSet<String>) -> Final {
    let ep = EndpointView::read(&w.endpoint_db());
    let mut all = BTreeSet::new();
    for d in devices {
        let dev = DeviceView::read(&d.store);
        for (id, state) in &dev.states {
            assert_eq!(state, "purged", "{id} not purged at the end");
        }
        assert!(dev.files.is_empty(), "part files left: {:?}", dev.files);
        assert!(dev.keys.is_empty(), "keys left: {:?}", dev.keys);
        let receipts = d.receipts();
        let list = receipts.as_array().expect("a receipt list");
        assert_eq!(list.len(), dev.states.len(), "one receipt per capture");
        for r in list {
            let id = r["capture_id"].as_str().expect("capture_id").to_string();
            assert_eq!(r["verified"], true, "receipt of {id} does not verify");
            assert_eq!(r["result"], "counted", "receipt of {id}");
            assert!(dev.states.contains_key(&id), "receipt for a stranger {id}");
        }
        all.extend(dev.states.keys().cloned());
    }
    assert!(known.is_subset(&all), "captures lost from the devices");
    let supported: BTreeSet<String> = ep.supports.keys().cloned().collect();
    let lost = all.difference(&supported).count();
    let strangers: Vec<&String> = supported.difference(&all).collect();
    assert_eq!(lost, 0, "{lost} captures never reached the endpoint");
    assert!(
        strangers.is_empty(),
        "supports no device made: {strangers:?}"
    );
    let (status, body) = w.get("/v1/admin/stats");
    assert_eq!(status, 200, "stats: {body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
    let counted = stats["counted"].as_u64().expect("counted");
    let received = stats["received"].as_u64().expect("received");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(counted, all.len() as u64, "counted vs captures: {stats}");
    assert_eq!(received, counted, "{stats}");
    let by_result: BTreeMap<&String, usize> =
        ep.supports.values().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r).or_default() += 1;
            m
        });
    assert_eq!(by_result.len(), 1, "{by_result:?}");
    Final {
        captures: all.len(),
        counted,
        lost,
        doubled: received - all.len() as u64 + stats["duplicates"].as_u64().unwrap_or(0),
    }
}
