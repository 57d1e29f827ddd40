//! The read phase of deciding a commit: a few short reads, no write transaction, nothing read
//! from the parts. In order: the collector (`422 collector_invalid`); the rows of the uploads
//! the commit names; the stored answer (step 1: a replay is answered here, before any budget
//! or upload is looked at); the device's refused-commit budget (`429 rate_limited`); the rows'
//! availability (`upload_missing`, not counted).
//!
//! The rows are read before the stored answer: on PostgreSQL each read sees the latest commit,
//! and a concurrent delivery of this capture that consumed the uploads recorded its answer in
//! the same commit, so uploads found gone here always come with that answer found.

use super::parts::{self, Available};
use super::{Answer, Job, limit, replayed};
use crate::error::ApiError;
use crate::http::unix;
use crate::state::Inner;
use crate::store::Db;

/// What the read phase found.
pub(super) enum Prepared {
    /// The stored answer to this commit, repeated.
    Replay(Answer),
    /// The uploads whose bytes the content phase reads, in kind order.
    Available(Vec<Available>),
}

pub(super) fn read(conn: &dyn Db, inner: &Inner, job: &Job) -> Result<Prepared, ApiError> {
    crate::collector::check(conn, &job.device, &job.req().collector)?;
    let named = parts::read_rows(conn, job.req())?;
    if let Some(answer) = replayed(conn, job)? {
        return Ok(Prepared::Replay(answer));
    }
    limit::refuse_when_over(conn, inner, &job.device)?;
    let now = unix(inner.now());
    Ok(Prepared::Available(parts::available(job, named, now)?))
}
