//! SIGKILL loops of real processes: a real `apoyo sync` device process against a real
//! `apoyo serve` endpoint over loopback, the device killed at aimed phases, then the endpoint
//! killed mid-request and restarted on its database. After each kill nothing is lost and
//! nothing claimed sent is missing at the endpoint; at the end every capture is counted
//! exactly once, the devices hold nothing, and every receipt verifies.
//!
//! Short versions run by default. Long ones:
//! `APOYO_KILL_DEVICE=300 APOYO_KILL_ENDPOINT=100 cargo test -p apoyo-cli --test kill_loops -- --nocapture`.
//! The seed is printed; `APOYO_KILL_SEED=<seed>` replays a run's aims (the kills' exact
//! moments still depend on the machine's timing).

mod common;
mod kill;

use kill::check::Phase;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{var} must be a number, not {v:?}"))
        })
        .unwrap_or(default)
}

#[test]
fn device_killed_at_every_phase_loses_nothing_and_counts_once() {
    let kills = count("APOYO_KILL_DEVICE", 40);
    let f = kill::device_loop::run(kills);
    eprintln!(
        "device kill loop (seed {}): {} kills in {:.1} s",
        f.seed, f.kills, f.seconds
    );
    for p in Phase::ALL {
        eprintln!(
            "  {:4}  {}",
            f.by_phase.get(&p).copied().unwrap_or(0),
            p.name()
        );
    }
    eprintln!(
        "  {} sync runs ended by themselves; {} captures, {} counted, {} lost, {} doubled",
        f.runs_ended_by_themselves, f.captures, f.counted, f.lost, f.doubled
    );
    assert_eq!(f.kills, kills);
    assert!(f.captures > 0);
    // The aims take turns, so even the short run aims about ten kills at each phase.
    let hit = |p: Phase| f.by_phase.get(&p).copied().unwrap_or(0);
    for p in [Phase::Upload, Phase::CommitRecorded, Phase::Purge] {
        assert!(hit(p) > 0, "no kill landed {} in {kills} kills", p.name());
    }
}

#[test]
fn endpoint_killed_mid_request_keeps_its_database_and_counts_once() {
    let kills = count("APOYO_KILL_ENDPOINT", 20);
    let f = kill::endpoint_loop::run(kills);
    eprintln!(
        "endpoint kill loop (seed {}): {} kills ({} just after a write, {} just after a capture's last part; \
         {} visibly cut a request) in {:.1} s; {} integrity checks ok; {} sync runs, {} retries; \
         {} captures, {} counted, {} lost, {} doubled",
        f.seed,
        f.kills,
        f.after_write,
        f.after_last_part,
        f.visibly_cut,
        f.seconds,
        f.integrity_checks,
        f.sync_runs,
        f.retries,
        f.captures,
        f.counted,
        f.lost,
        f.doubled
    );
    assert_eq!(f.kills, kills);
    assert!(f.captures > 0);
    assert!(
        f.retries > 0,
        "no device ever saw a request fail: the kills missed every request"
    );
}
