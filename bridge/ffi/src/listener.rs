//! The host's event and progress callbacks. Events arrive as JSON (see `apoyo_sync::Event`;
//! ids, states, reasons and times only — never personal data), borrowed for the duration of
//! the callback. They are called on the thread that runs the operation (the sync thread for
//! sync events), so `ctx` must be usable from any thread.

use std::ffi::c_void;

use apoyo_sync::{Event, Listener, Progress};

use crate::types::ApoyoProgress;

/// Callbacks the app registers with `apoyo_engine_set_listener`. Any of them may be NULL.
/// `destroy` is called once, when the listener is replaced or the engine is closed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ApoyoListener {
    pub ctx: *mut c_void,
    pub on_event: Option<unsafe extern "C" fn(ctx: *mut c_void, json: *const u8, len: usize)>,
    pub on_progress: Option<unsafe extern "C" fn(ctx: *mut c_void, progress: *const ApoyoProgress)>,
    pub destroy: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// The host listener as the core sees it.
pub struct HostListener(ApoyoListener);

// SAFETY: the header documents that `ctx` and the callbacks must be callable from any thread.
unsafe impl Send for HostListener {}
// SAFETY: as above.
unsafe impl Sync for HostListener {}

impl HostListener {
    pub fn new(l: ApoyoListener) -> Self {
        HostListener(l)
    }
}

impl Listener for HostListener {
    fn on_event(&self, event: &Event) {
        let Some(f) = self.0.on_event else { return };
        let Ok(json) = serde_json::to_vec(event) else {
            return;
        };
        // SAFETY: the JSON bytes are valid for the duration of the call.
        unsafe { f(self.0.ctx, json.as_ptr(), json.len()) };
    }

    fn on_progress(&self, p: &Progress) {
        let Some(f) = self.0.on_progress else { return };
        let c = ApoyoProgress {
            done: p.done,
            pending: p.pending,
            bytes_sent: p.bytes_sent,
        };
        // SAFETY: `c` is valid for the duration of the call.
        unsafe { f(self.0.ctx, &c) };
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        if let Some(f) = self.0.destroy {
            // SAFETY: called exactly once, when the engine lets go of the listener.
            unsafe { f(self.0.ctx) };
        }
    }
}
