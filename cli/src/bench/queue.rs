//! `queue_op_100k_vs_1k`: what the queue's size costs each operation a phone repeats.
//!
//! Three stores of one device: "1k" (≈1,000 small captures waiting and one purged, made by
//! real captures and a real sync), "100k" (a copy of "1k" plus 99,000 purged captures: the
//! purged row, its parts and its receipt cloned in SQL under new ids — what months of use
//! leave), and "100k waiting" (a copy of "1k" plus 99,000 waiting captures: a waiting
//! capture's rows cloned, its part file hard-linked). Timed, each as a fresh open as the CLI
//! does it: open + capture + close, open + status + close, and `next_due_at` on an open store;
//! the opens both after a clean close and after the previous holder was SIGKILLed (a child
//! process that opened the store). Medians over repetitions; ratio 100k / 1k.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use apoyo_fieldkit::fieldtest::device;
use apoyo_fieldkit::fieldtest::plan::{self, Kind, Planned};
use apoyo_fieldkit::fieldtest::setup::Device;
use apoyo_sync::State;
use rusqlite::{Connection, params};

use super::fixture::{Rig, capture_plan, fail, open};
use super::{Ctx, Figures, Goal, median, ratio};
use crate::CliResult;

/// What `apoyo bench-hold` takes: a device folder whose store it opens and holds.
#[derive(clap::Args)]
pub struct HoldArgs {
    #[arg(long)]
    dir: std::path::PathBuf,
}

/// `apoyo bench-hold` (test support): opens the store, says so, and waits to be SIGKILLed.
pub fn hold(a: HoldArgs) -> CliResult {
    let _store = device::open_store(&a.dir).map_err(|e| fail("hold", e))?;
    println!("open");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Opens the store in a child process and SIGKILLs it while it holds the store.
fn kill_holder(ctx: &Ctx, dir: &Path) -> CliResult {
    let mut child = Command::new(&ctx.exe)
        .arg("bench-hold")
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail("holder", e))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| fail("holder", "no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| fail("holder", e))?;
    child.kill().map_err(|e| fail("holder", e))?; // SIGKILL
    child.wait().map_err(|e| fail("holder", e))?;
    if line.trim() != "open" {
        return Err(fail("holder", "the child did not open the store"));
    }
    Ok(())
}

/// A valid UUIDv7-shaped id for clone `n` (older than any real capture).
fn clone_id(n: u64) -> String {
    format!(
        "0180{:04x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        (n >> 48) & 0xffff,
        (n >> 32) & 0xffff,
        (n >> 20) & 0xfff,
        (n >> 8) & 0xfff,
        n
    )
}

/// `INSERT INTO table (cols) SELECT ?1, rest FROM table WHERE id_col = ?2`.
fn clone_sql(conn: &Connection, table: &str, id_col: &str) -> CliResult<String> {
    let mut st = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .map_err(|e| fail("schema", e))?;
    let cols: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(1))
        .and_then(|m| m.collect())
        .map_err(|e| fail("schema", e))?;
    let sel: Vec<String> = cols
        .iter()
        .map(|c| {
            if c == id_col {
                "?1".to_string()
            } else {
                c.clone()
            }
        })
        .collect();
    Ok(format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {table} WHERE {id_col} = ?2",
        cols.join(", "),
        sel.join(", ")
    ))
}

/// Clones capture `template` (its rows in `tables`) `n` times; hard-links its part file too
/// when `link_file` (a copy of the capture's own file: enough for the queue operations timed
/// here, which never read a part).
fn clone_captures(
    dir: &Path,
    template: &str,
    n: u64,
    tables: &[(&str, &str)],
    link_file: bool,
) -> CliResult {
    let store = dir.join("store");
    let mut conn = Connection::open(store.join("apoyo.db")).map_err(|e| fail("clone", e))?;
    let tx = conn.transaction().map_err(|e| fail("clone", e))?;
    {
        let mut stmts = Vec::new();
        for (t, c) in tables {
            let sql = clone_sql(&tx, t, c)?;
            stmts.push(tx.prepare(&sql).map_err(|e| fail("clone", e))?);
        }
        let template_file = store.join("parts").join(format!("{template}.parts"));
        let mut from = template_file.clone();
        for i in 0..n {
            let id = clone_id(i);
            for st in &mut stmts {
                st.execute(params![id, template])
                    .map_err(|e| fail("clone", e))?;
            }
            if link_file {
                let to = store.join("parts").join(format!("{id}.parts"));
                // ext4 allows 65,000 links per inode: a fresh copy every 50,000.
                if i % 50_000 == 0 {
                    std::fs::copy(&template_file, &to).map_err(|e| fail("clone", e))?;
                    from = to;
                } else {
                    std::fs::hard_link(&from, &to).map_err(|e| fail("clone", e))?;
                }
            }
        }
    }
    tx.commit().map_err(|e| fail("clone", e))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> CliResult {
    std::fs::create_dir_all(to).map_err(|e| fail("copy", e))?;
    for e in std::fs::read_dir(from).map_err(|e| fail("copy", e))? {
        let e = e.map_err(|e| fail("copy", e))?;
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target).map_err(|e| fail("copy", e))?;
        }
    }
    Ok(())
}

/// The three stores; returns (1k, 100k, 100k waiting) device folders.
fn build(ctx: &Ctx, work: &Path) -> CliResult<(Device, Device, Device, u64)> {
    let waiting = ctx.pick(1000, 60);
    let clones = ctx.pick(99_000u64, 1_940);
    let rig = Rig::new(work, 1, waiting + 1, 4096)?;
    let d = rig.devices[0].clone();
    let mut store = open(&d)?;
    capture_plan(&mut store, &d, 0..1, |_, _, _| Ok(()))?;
    super::sync::drain(&mut store, &rig.ep.url, std::time::Duration::from_secs(120))?;
    capture_plan(&mut store, &d, 1..usize::MAX, |_, _, _| Ok(()))?;
    let list = store.list()?;
    let pick = |s: State| {
        list.iter()
            .find(|c| c.state == s)
            .map(|c| c.id.to_string())
            .ok_or_else(|| fail("queue", format!("no {s:?} capture")))
    };
    let (purged, waiting_id) = (pick(State::Purged)?, pick(State::Captured)?);
    drop(store);
    rig.stop();
    let (mut big, mut all) = (d.clone(), d.clone());
    big.dir = work.join("store-100k");
    all.dir = work.join("store-100k-waiting");
    copy_dir(&d.dir, &big.dir)?;
    copy_dir(&d.dir, &all.dir)?;
    clone_captures(
        &big.dir,
        &purged,
        clones,
        &[
            ("captures", "id"),
            ("parts", "capture_id"),
            ("receipts", "capture_id"),
        ],
        false,
    )?;
    clone_captures(
        &all.dir,
        &waiting_id,
        clones,
        &[
            ("captures", "id"),
            ("parts", "capture_id"),
            ("capture_keys", "capture_id"),
        ],
        true,
    )?;
    Ok((d, big, all, clones))
}

/// Times for one store: (open+capture, open+status, next-due), each a median, in ms.
struct Times {
    capture: f64,
    status: f64,
    next_due: f64,
    /// How each timed open found the store (`Store::previous_shutdown`), counted.
    found: std::collections::BTreeMap<&'static str, u32>,
}

fn time_ops(ctx: &Ctx, d: &Device, killed: bool, citizen: &mut u32) -> CliResult<Times> {
    let reps = ctx.pick(7, 2);
    let (mut cap, mut st, mut nd) = (Vec::new(), Vec::new(), Vec::new());
    let mut found = std::collections::BTreeMap::new();
    for _ in 0..reps {
        if killed {
            kill_holder(ctx, &d.dir)?;
        }
        *citizen += 1;
        let p = Planned {
            index: 0,
            citizen: *citizen,
            kind: Kind::Valid,
        };
        let c = plan::capture(&d.plan, &p)?;
        let t = Instant::now();
        let mut s = open(d)?;
        *found.entry(s.previous_shutdown()).or_insert(0) += 1;
        s.capture(c)?;
        drop(s);
        cap.push(t.elapsed().as_secs_f64() * 1e3);
        if killed {
            kill_holder(ctx, &d.dir)?;
        }
        let t = Instant::now();
        let s = open(d)?;
        *found.entry(s.previous_shutdown()).or_insert(0) += 1;
        std::hint::black_box(s.status()?);
        drop(s);
        st.push(t.elapsed().as_secs_f64() * 1e3);
        let s = open(d)?;
        let t = Instant::now();
        std::hint::black_box(s.next_due_at()?);
        nd.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Times {
        capture: median(&mut cap),
        status: median(&mut st),
        next_due: median(&mut nd),
        found,
    })
}

/// `queue_op_100k_vs_1k` and its parts.
pub fn queue_ops(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let work = ctx.scratch("queue")?;
    let (small, big, all, clones) = build(ctx, work.path())?;
    let mut citizen = 900_000;
    let mut worst: (f64, f64, f64) = (0.0, 0.0, 0.0);
    let rows = clones + ctx.pick(1001, 61);
    for (killed, tag) in [(false, ""), (true, "_after_kill")] {
        let a = time_ops(ctx, &small, killed, &mut citizen)?;
        let b = time_ops(ctx, &big, killed, &mut citizen)?;
        let w = time_ops(ctx, &all, killed, &mut citizen)?;
        for (op, x, y, z) in [
            ("open_capture", a.capture, b.capture, w.capture),
            ("open_status", a.status, b.status, w.status),
            ("next_due", a.next_due, b.next_due, w.next_due),
        ] {
            if killed && op == "next_due" {
                continue; // measured on an open store: no open involved
            }
            let r = ratio(y, x);
            if r > worst.0 {
                worst = (r, y, x);
            }
            let what = |kind: &str, t: &Times| {
                format!(
                    "{op} with {rows} capture rows ({kind}) vs ≈1,000 waiting{}; the timed opens found {:?} (1k: {:?})",
                    if killed {
                        ", each open after a SIGKILLed holder"
                    } else {
                        ", after a clean close"
                    },
                    t.found,
                    a.found
                )
            };
            figs.put(
                &format!("queue_{op}{tag}_100k_vs_1k"),
                r,
                (y, x),
                "ms",
                Goal::AtMost(1.5),
                &what("mostly purged", &b),
            );
            figs.put(
                &format!("queue_{op}{tag}_100k_all_waiting_vs_1k"),
                ratio(z, x),
                (z, x),
                "ms",
                Goal::None,
                &what("all waiting", &w),
            );
        }
    }
    figs.put(
        "queue_op_100k_vs_1k",
        worst.0,
        (worst.1, worst.2),
        "ms",
        Goal::AtMost(1.5),
        "the worst of the queue_* 100k (mostly purged) / 1k ratios, clean close and after SIGKILL",
    );
    Ok(())
}
