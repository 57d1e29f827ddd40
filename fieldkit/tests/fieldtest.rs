//! A whole field run through the library (in-process endpoint, real proxy links, real stores),
//! then the accounting checked against tampering: a support removed from the endpoint's
//! database is reported lost, and a citizen counted twice is reported counted twice — the
//! figures come from what is held, never from what was expected.

use std::sync::Arc;
use std::time::Duration;

use apoyo_fieldkit::fieldtest::marks::{Decision, Step};
use apoyo_fieldkit::fieldtest::{self, FieldConfig, Verdict, account};
use apoyo_fieldkit::profile;
use apoyo_fieldkit::proxy::FaultLog;

fn config(dir: &std::path::Path) -> FieldConfig {
    FieldConfig {
        devices: 2,
        captures: 6,
        profile: profile::by_name("good").unwrap(),
        seed: 17,
        capture_bytes: 4096,
        shared_link: false,
        kill_rate: None,
        deadline: Duration::from_secs(60),
        endpoint: None,
        http_mode: false,
        device_exe: None,
        work_dir: dir.to_path_buf(),
        backoff: fieldtest::field_backoff(),
        command: "test".into(),
    }
}

#[test]
fn a_clean_run_counts_every_support_once_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let out = fieldtest::run(&cfg, &mut |_| {}).unwrap();
    let r = &out.report;
    // Per device: 2 shared citizens' slots, 1 valid, 1 refused locally, 2 endpoint-invalid.
    assert_eq!(r.captured, 10, "{r:?}");
    assert_eq!(r.refused_locally, 2, "{r:?}");
    assert_eq!(
        (r.counted, r.duplicates_found, r.duplicates_expected),
        (4, 2, 2),
        "{r:?}"
    );
    assert_eq!(r.quarantined, 4, "{r:?}");
    assert_eq!(r.quarantined_by_reason.get("process_unknown"), Some(&2));
    assert_eq!(r.quarantined_by_reason.get("out_of_scope"), Some(&2));
    assert_eq!((r.lost, r.double_counted, r.pending), (0, 0, 0), "{r:?}");
    assert!(r.drained);
    assert_eq!(r.verdict(), Verdict::Ok);
    assert!(
        r.wire_bytes > r.payload_bytes && r.payload_bytes > 10 * 4096,
        "{r:?}"
    );

    // The timeline has each device's attempts and the engine's decisions: a receipt mark for
    // each support the endpoint decided counted or duplicate, a quarantine mark for each it
    // rejected, each after that device's successful PATCH and commit attempts.
    let (mut receipts, mut quarantines) = (0, 0);
    for lane in &out.timeline.devices {
        let ok = |s: Step| lane.attempts.iter().filter(|a| a.step == s && a.ok).count();
        let decided = |w: Decision| lane.decisions.iter().filter(|d| d.what == w).count();
        let accepted = lane
            .commits
            .iter()
            .filter(|c| c.1 == "counted" || c.1 == "duplicate")
            .count();
        assert_eq!(decided(Decision::Receipt), accepted, "{lane:?}");
        assert_eq!(
            decided(Decision::Quarantined),
            lane.commits.len() - accepted,
            "{lane:?}"
        );
        assert!(ok(Step::Patch) >= lane.captures.len(), "{lane:?}");
        // A rejected support's commit is answered 422: a failed attempt, then quarantined.
        assert!(ok(Step::Commit) >= accepted, "{lane:?}");
        let commits = lane.attempts.iter().filter(|a| a.step == Step::Commit);
        assert!(commits.count() >= lane.commits.len(), "{lane:?}");
        let first_receipt = lane.decisions.iter().find(|d| d.what == Decision::Receipt);
        let first_commit = lane.attempts.iter().find(|a| a.step == Step::Commit);
        assert!(first_commit.unwrap().end_ms <= first_receipt.unwrap().at_ms + 1);
        receipts += decided(Decision::Receipt);
        quarantines += decided(Decision::Quarantined);
    }
    assert_eq!((receipts, quarantines), (6, 4));

    let recount = || {
        let lives: Vec<_> = out.devices.iter().map(|_| Arc::default()).collect();
        account::compute(account::Inputs {
            cfg: &cfg,
            devices: &out.devices,
            lives: &lives,
            endpoint_db: &dir.path().join("endpoint.db"),
            log: &FaultLog::new(None),
            wire: &[],
            series: Vec::new(),
            elapsed: Duration::from_secs(1),
            t0: time::OffsetDateTime::now_utc(),
        })
        .unwrap()
        .0
    };
    assert_eq!(recount().lost, 0);

    // The endpoint counts both captures of each shared citizen: counted twice.
    let db = rusqlite::Connection::open(dir.path().join("endpoint.db")).unwrap();
    db.execute_batch(
        "DROP INDEX supports_counted_once;
         UPDATE supports SET result = 'counted', first_capture_id = NULL WHERE result = 'duplicate';",
    )
    .unwrap();
    let r = recount();
    assert_eq!(r.double_counted, 2, "{r:?}");
    assert_eq!(r.verdict(), Verdict::LostOrCountedTwice, "exit code 5");
    assert_eq!((r.duplicates_found, r.counted, r.lost), (0, 6, 0), "{r:?}");

    // The endpoint "forgets" one counted support the phone has already purged: lost.
    let gone: String = db
        .query_row(
            "SELECT capture_id FROM supports WHERE result = 'counted' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute("DELETE FROM support_parts WHERE capture_id = ?1", [&gone])
        .unwrap();
    db.execute("DELETE FROM supports WHERE capture_id = ?1", [&gone])
        .unwrap();
    let r = recount();
    assert_eq!((r.lost, r.counted), (1, 5), "{r:?}");
    assert_eq!(r.verdict(), Verdict::LostOrCountedTwice, "exit code 5");
}
