//! The capture queue's lifecycle.
//!
//! ```text
//!            capture()                 first part upload          signed receipt verified
//!   (none) ───────────► captured ─────────────────────► uploading ─────────────────────► committed
//!                          │  ▲                             │                                │ purge: key wraps
//!                          │  └──── retry on demand ────┐   │ permanent rejection            │ deleted, file
//!                          └──────────────────────────► quarantined(reason) ◄──┘             ▼ removed
//!                                                                                          purged
//! ```
//! - `captured`: durable on the device, nothing sent yet.
//! - `uploading`: at least one part upload was created on the endpoint; resumable from the
//!   offset the endpoint acknowledges.
//! - `committed`: the endpoint counted it (or found the citizen already counted) and its
//!   signed receipt verified. Its bytes are deleted right after (`purged`).
//! - `purged`: only the queue row and the receipt remain; the part file and both key wraps are
//!   gone (crypto-shredded).
//! - `quarantined`: the endpoint refused it for a documented, permanent reason (stored in
//!   `reason`). Never deleted; the user may retry it ([`crate::Store::retry_quarantined`]).
//!
//! Transient failures never change the state: they bump `attempts` and set `next_attempt_at`
//! (persisted, so the schedule survives the app being killed).

use serde::Serialize;

use crate::error::{Error, Result};

/// A capture's queue state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Captured,
    Uploading,
    Committed,
    Purged,
    Quarantined,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Captured => "captured",
            State::Uploading => "uploading",
            State::Committed => "committed",
            State::Purged => "purged",
            State::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "captured" => State::Captured,
            "uploading" => State::Uploading,
            "committed" => State::Committed,
            "purged" => State::Purged,
            "quarantined" => State::Quarantined,
            _ => return Err(Error::integrity("queue state")),
        })
    }
}
