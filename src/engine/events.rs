//! What the engine tells the app without being asked: each capture's state change, why a sync
//! is waiting, and progress. An app screen subscribes once ([`Listener`]) and never polls.
//!
//! Events carry ids, states, reason codes and times only — never personal data.

use time::OffsetDateTime;

use super::control::{CaptureChange, Hold};
use crate::sync::{Progress, SyncReport};

/// Why a sync is waiting instead of sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "wait", rename_all = "snake_case")]
pub enum Wait {
    /// The app says there is no network.
    NoNetwork,
    /// The policy is "Wi-Fi only" and the link is cellular or metered.
    WifiOnly,
    /// The cellular allowance is spent; a new policy (or Wi-Fi) lets it go on.
    CellularCapReached,
    /// Every pending capture waits for its retry time; the next is due at `until`.
    Backoff {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// The device must be activated (again) before anything is sent.
    NeedsActivation,
}

impl Wait {
    pub(crate) fn from_hold(h: Hold) -> Option<Wait> {
        match h {
            Hold::NoNetwork => Some(Wait::NoNetwork),
            Hold::WifiOnly => Some(Wait::WifiOnly),
            Hold::CellularCapReached => Some(Wait::CellularCapReached),
            Hold::Cancelled | Hold::Yield => None,
        }
    }
}

/// Something the app may want to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A capture changed state: captured, uploading, committed, purged, quarantined, or was
    /// rescheduled after a transient failure (same state, a new `next_attempt_at`).
    Capture(CaptureChange),
    /// A sync run started.
    SyncStarted,
    /// A sync run is waiting (and has stopped sending) for this reason.
    SyncWaiting(Wait),
    /// A sync run ended.
    SyncFinished(SyncReport),
}

/// The app's subscriber. Called on the thread that runs the operation (the sync thread for
/// sync events); keep it short and hand the event to the UI thread.
pub trait Listener: Send + Sync {
    fn on_event(&self, event: &Event);
    /// Called after each capture reaches a terminal state or is rescheduled.
    fn on_progress(&self, _progress: &Progress) {}
}
