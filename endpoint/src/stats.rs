//! What the endpoint decided, counted from the recorded supports (a replay is not a new
//! support, so it is not counted again).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Db, StoreError};

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

pub(crate) fn query(conn: &dyn Db) -> Result<Stats, StoreError> {
    let rows = conn.support_counts()?;
    let mut s = Stats::default();
    for row in rows {
        let (process, result, reason, n) = row;
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
