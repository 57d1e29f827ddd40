//! What the endpoint decided, counted from the recorded supports (a replay is not a new
//! support, so it is not counted again).

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

/// Served as JSON by `/v1/admin/stats` (dev) and returned by `RunningEndpoint::stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct supports decided (counted + duplicates + recorded rejections).
    pub received: u64,
    pub counted: u64,
    pub duplicates: u64,
    /// Recorded rejections per reason code.
    pub rejected: BTreeMap<String, u64>,
    pub by_process: BTreeMap<String, ProcessStats>,
}

/// Per-process counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub counted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

pub(crate) fn query(conn: &Connection) -> rusqlite::Result<Stats> {
    let mut st = conn.prepare(
        "SELECT process_id, result, coalesce(reason, ''), count(*) FROM supports GROUP BY 1, 2, 3",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut s = Stats::default();
    for row in rows {
        let (process, result, reason, n) = row?;
        let n = n.max(0) as u64;
        s.received += n;
        let p = s.by_process.entry(process).or_default();
        match result.as_str() {
            "counted" => {
                s.counted += n;
                p.counted += n;
            }
            "duplicate" => {
                s.duplicates += n;
                p.duplicates += n;
            }
            _ => {
                *s.rejected.entry(reason).or_default() += n;
                p.rejected += n;
            }
        }
    }
    Ok(s)
}
