//! The decision transaction of a commit, short and after the content phase: the lock on the
//! device's capture, step 1 again (a delivery through another replica may have decided it
//! meanwhile), the count of a refusal (`limit`), the re-check of the uploads read
//! (`parts::still_held`), the duplicate rule (step 6), the answer (step 8) and the record
//! (step 7). A transaction that lost a race to another replica is run again from here, never
//! the content phase: its outcome is the same bytes' and is only read.

use std::sync::atomic::Ordering;

use apoyo_sync::CaptureId;

use super::content::Outcome;
use super::{Answer, Decided, Decision, Job, again, limit, parts, receipt, record, replayed};
use crate::blobs::support_dir_name;
use crate::error::ApiError;
use crate::http::unix;
use crate::state::Inner;
use crate::store::Db;

pub(super) fn decide(
    conn: &dyn Db,
    inner: &Inner,
    job: &Job,
    outcome: &Outcome,
) -> Result<Answer, ApiError> {
    let req = job.req();
    conn.begin()?;
    let tx = conn;
    tx.lock_capture(&job.device.id, &req.capture_id.to_string())?;
    if let Some(answer) = replayed(tx, job)? {
        return Ok(answer);
    }
    let (held, verdict, skew) = match outcome {
        Outcome::Refused(refusal) => return Err(limit::count(tx, inner, &job.device, refusal)?),
        Outcome::Held {
            held,
            verdict,
            skew,
        } => (held, verdict, *skew),
    };
    let now = inner.now();
    if let Err(refusal) = parts::still_held(tx, job, held, unix(now))? {
        return Err(limit::count(tx, inner, &job.device, &refusal)?);
    }
    let decision = duplicate_rule(tx, job, verdict)?;
    let decided = Decided {
        device: &job.device,
        req,
        received: &job.received,
        held,
        decision: &decision,
        now,
        skew,
        folder: support_dir_name(&req.capture_id, &job.device.id),
    };
    let answer = receipt::answer(inner, &decided)?;
    record::keep(tx, inner, &decided, &job.digest, &answer)?;
    let result = match &decision {
        Decision::Counted { .. } => "counted",
        Decision::Duplicate { .. } => "duplicate",
        Decision::Rejected(e) => e.reason.code(),
    };
    tracing::info!(capture = %req.capture_id, device = %job.device.id, process = %req.process_id, result, "commit decided");
    inner.commits_decided.fetch_add(1, Ordering::Relaxed);
    Ok(answer)
}

/// Step 6 on the content's verdict: the duplicate rule on the duplicate key. The duplicate
/// receipt names the counted capture only when it came from the same device or the same
/// collector: to anyone else it would be an oracle for "did this citizen support this
/// aspirant?".
fn duplicate_rule(
    conn: &dyn Db,
    job: &Job,
    verdict: &Result<[u8; 32], ApiError>,
) -> Result<Decision, ApiError> {
    let dup_key = match verdict {
        Err(rejection) => return Ok(Decision::Rejected(again(rejection))),
        Ok(dup_key) => *dup_key,
    };
    let first: Option<(String, String, String, String)> = conn.counted_by_dup_key(&dup_key[..])?;
    let Some((first, first_device, kind, id)) = first else {
        return Ok(Decision::Counted { dup_key });
    };
    let first: CaptureId = first.parse().map_err(ApiError::internal)?;
    let (my_kind, my_id) = record::collector_parts(&job.req().collector);
    let related = first_device == job.device.id || (kind == my_kind && id == my_id);
    Ok(Decision::Duplicate {
        dup_key,
        first,
        shown: related.then_some(first),
    })
}
