//! Run control: how a sync run is told, from other threads, to stop at its next exchange
//! boundary (cancel, the network policy, another call waiting for the store), and how it
//! reports each capture's state change as it happens. The run sees only [`RunControl`]; the
//! app-facing engine implements it (`crate::engine::control`). Also the run's side of it:
//! checking the hold, waiting for the next due capture, and emitting changes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;

use super::engine::Run;
use crate::error::Result;
use crate::model::CaptureId;
use crate::queue::State;

/// Why a run stops (or does not start) before its next exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// The app cancelled the run.
    Cancelled,
    /// The app says there is no network.
    NoNetwork,
    /// The policy is "Wi-Fi only" and the link is cellular or metered.
    WifiOnly,
    /// The next exchange would go over the cellular allowance.
    CellularCapReached,
    /// Another call (a capture, a retry) is waiting for the store; the run resumes after it.
    Yield,
}

impl Hold {
    /// A short description for logs and messages (no personal data).
    pub fn describe(self) -> &'static str {
        match self {
            Hold::Cancelled => "cancelled",
            Hold::NoNetwork => "no network",
            Hold::WifiOnly => "Wi-Fi only",
            Hold::CellularCapReached => "cellular allowance reached",
            Hold::Yield => "yielding to another call",
        }
    }
}

/// One capture's state change during a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaptureChange {
    pub id: CaptureId,
    pub state: State,
    /// Why: the endpoint's reason for a quarantine, the failure for a rescheduled attempt.
    pub reason: Option<String>,
    /// For a rescheduled capture, when it is tried again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// The boxed future of [`RunControl::changed`].
pub type Changed<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a sync run consults before each exchange and tells about each capture.
pub trait RunControl: Send + Sync {
    /// Why the run must stop now, if it must.
    fn hold(&self) -> Option<Hold>;
    /// Records a hold decided while sending (the transport refused a request).
    fn hold_for(&self, hold: Hold);
    /// Resolves when [`RunControl::hold`] may have changed (cancel, a new network policy),
    /// so a run waiting for its next due capture wakes at once. Create it before checking.
    fn changed(&self) -> Changed<'_>;
    /// A capture changed state.
    fn capture_changed(&self, change: &CaptureChange);
    /// Whether exchanges must go one at a time: on a metered link with an allowance, each
    /// request reserves room for its answer, and several in flight would make the allowance
    /// look spent while room is left (review of ADR 0022).
    fn one_at_a_time(&self) -> bool {
        false
    }
}

impl Run<'_> {
    /// Why the run must stop before its next exchange, if it must.
    pub(super) fn held(&self) -> Option<Hold> {
        self.opts.control.as_ref().and_then(|c| c.hold())
    }

    /// Sleeps `wait` on the store's clock (virtual in a simulation), or less when the control
    /// changes (a cancel, a new network policy).
    pub(super) async fn sleep_unless_changed(&self, wait: Duration) {
        let clock = &self.clock;
        match &self.opts.control {
            None => clock.sleep(wait).await,
            Some(c) => {
                let changed = c.changed();
                if c.hold().is_some() {
                    return;
                }
                tokio::select! {
                    _ = clock.sleep(wait) => {}
                    _ = changed => {}
                }
            }
        }
    }

    /// Tells the control that a capture changed state.
    pub(super) fn changed(
        &self,
        id: &CaptureId,
        state: State,
        reason: Option<&str>,
        next_attempt_at: Option<OffsetDateTime>,
    ) {
        if let Some(c) = &self.opts.control {
            c.capture_changed(&CaptureChange {
                id: *id,
                state,
                reason: reason.map(str::to_string),
                next_attempt_at,
            });
        }
    }

    /// Quarantines a capture (bytes and keys kept) and says so.
    pub(super) fn quarantine(&self, id: &CaptureId, reason: &str) -> Result<()> {
        self.store().quarantine(id, reason)?;
        self.changed(id, State::Quarantined, Some(reason), None);
        Ok(())
    }
}
