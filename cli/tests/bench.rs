//! `apoyo bench --quick --json`: every figure of issue 16 is reported, finite, with its
//! baseline from the same run. Not a timing assertion: quick mode's figures are not meaningful
//! (docs/performance.md has the real ones and how to measure them).

use std::process::Command;

/// Every key the bench must report.
const KEYS: &[&str] = &[
    "capture_commit_vs_raw_fsync",
    "seal_vs_bare_aead",
    "sync_vs_durable_post",
    "wire_bytes_per_payload_cut_100k",
    "wire_bytes_per_payload_cut_256k",
    "wire_bytes_per_payload_cut_1m",
    "goodput_vs_link_edge",
    "goodput_vs_link_3g",
    "goodput_vs_link_2g_rural",
    "queue_op_100k_vs_1k",
    "queue_open_capture_100k_vs_1k",
    "queue_open_status_100k_vs_1k",
    "queue_next_due_100k_vs_1k",
    "queue_open_capture_after_kill_100k_vs_1k",
    "queue_open_status_after_kill_100k_vs_1k",
    "queue_open_status_100k_all_waiting_vs_1k",
    "peak_rss_mb_1000_queued",
    "peak_rss_mb_100_queued",
    "endpoint_ingest_vs_raw_fsync",
    "acked_bytes_min_per_30s_run_2g_rural",
];

#[test]
fn quick_bench_reports_every_key_finite() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_apoyo"))
        .args(["bench", "--quick", "--json", "--dir"])
        .arg(scratch.path())
        .output()
        .expect("run apoyo bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "apoyo bench failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["quick"], true);
    assert!(v["machine"]["cpu"].is_string(), "{v}");
    let figs = v["figures"].as_object().expect("figures");
    for key in KEYS {
        let f = figs
            .get(*key)
            .unwrap_or_else(|| panic!("{key} missing from {v}"));
        for field in ["value", "candidate", "baseline"] {
            let x = f[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}.{field} is not a number: {f}"));
            assert!(x.is_finite() && x >= 0.0, "{key}.{field} = {x}");
        }
        assert!(f["goal"].is_string() && f["what"].is_string(), "{key}: {f}");
    }
    // Baselines are measured, not made up: the ones in bytes or time are never zero.
    for key in [
        "capture_commit_vs_raw_fsync",
        "seal_vs_bare_aead",
        "sync_vs_durable_post",
        "endpoint_ingest_vs_raw_fsync",
        "wire_bytes_per_payload_cut_256k",
    ] {
        assert!(
            figs[key]["baseline"].as_f64().unwrap_or(0.0) > 0.0,
            "{key}: {}",
            figs[key]
        );
    }
    // Nothing of the scratch folder is left behind.
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("scratch")
        .collect();
    assert!(left.is_empty(), "bench left {} entries", left.len());
}
