//! The engine's run control: cancel, the network policy (through the [`Meter`]), calls waiting
//! for the store, and the sink that turns capture changes into the app's events. The sync run
//! sees it as a [`RunControl`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::network::Meter;
pub use crate::sync::control::{CaptureChange, Changed, Hold, RunControl};

/// Receives capture changes (the engine's listener, behind the control).
pub type ChangeSink = Arc<dyn Fn(&CaptureChange) + Send + Sync>;

/// The engine's run control.
pub struct Control {
    meter: Arc<Meter>,
    cancelled: AtomicBool,
    waiting_calls: AtomicUsize,
    held: Mutex<Option<Hold>>,
    notify: tokio::sync::Notify,
    sink: Mutex<Option<ChangeSink>>,
}

impl Control {
    pub fn new(meter: Arc<Meter>) -> Self {
        Control {
            meter,
            cancelled: AtomicBool::new(false),
            waiting_calls: AtomicUsize::new(0),
            held: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
            sink: Mutex::new(None),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Hold>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clears the cancel flag and any recorded hold: a new run starts.
    pub fn start_run(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
        *self.held() = None;
    }

    /// Clears a recorded hold (after a yield, before the run resumes).
    pub fn clear_held(&self) {
        *self.held() = None;
    }

    /// Asks the running sync (if any) to stop at its next exchange boundary.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Wakes a waiting run so it re-reads the policy.
    pub fn policy_changed(&self) {
        self.notify.notify_waiters();
    }

    /// A call announces it waits for the store (the run yields to it).
    pub fn call_waiting(&self) -> WaitingCall<'_> {
        self.waiting_calls.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
        WaitingCall(self)
    }

    pub fn calls_waiting(&self) -> bool {
        self.waiting_calls.load(Ordering::SeqCst) > 0
    }

    pub fn set_sink(&self, sink: Option<ChangeSink>) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = sink;
    }
}

/// Held while a call waits for the store; dropping it withdraws the request.
pub struct WaitingCall<'a>(&'a Control);

impl Drop for WaitingCall<'_> {
    fn drop(&mut self) {
        self.0.waiting_calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RunControl for Control {
    fn one_at_a_time(&self) -> bool {
        self.meter.allowance_applies()
    }

    fn hold(&self) -> Option<Hold> {
        if self.is_cancelled() {
            return Some(Hold::Cancelled);
        }
        if let Some(h) = *self.held() {
            return Some(h);
        }
        if self.calls_waiting() {
            return Some(Hold::Yield);
        }
        self.meter.hold()
    }

    fn hold_for(&self, hold: Hold) {
        let mut h = self.held();
        if h.is_none() {
            *h = Some(hold);
        }
    }

    fn changed(&self) -> Changed<'_> {
        Box::pin(self.notify.notified())
    }

    fn capture_changed(&self, change: &CaptureChange) {
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(s) = sink {
            s(change);
        }
    }
}
