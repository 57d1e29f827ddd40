//! `Engine::sync`: one sync run within a time budget, as passes of the core sync engine. A pass
//! ends when the queue is drained, the budget is spent, the activation is missing, or the run
//! control holds it (cancel, network policy, another call waiting for the store). After a
//! yield the next pass resumes with what is left of the budget; after any other end the run
//! reports why it stopped and, if something is left, why it waits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::control::{Hold, RunControl};
use super::events::{Event, Wait};
use super::{Engine, lock};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::sync::{self, StopReason, SyncOptions, SyncReport};

/// A budget beyond a year means "no limit": a year, which an `Instant` can always hold.
const MAX_BUDGET: Duration = Duration::from_secs(365 * 24 * 3600);

/// Resets the engine's "syncing" flag and the run control when the run ends, however it ends.
struct Running<'a>(&'a Engine);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut runner = lock(&self.0.run_gate);
        self.0.syncing.store(false, Ordering::SeqCst);
        self.0.control.start_run();
        *runner = None;
        self.0.run_ended.notify_all();
    }
}

impl<'a> Running<'a> {
    /// Marks the engine as syncing, or says a run is already going on.
    fn start(engine: &'a Engine) -> Result<Self> {
        let mut runner = lock(&engine.run_gate);
        if engine.syncing.swap(true, Ordering::SeqCst) {
            return Err(Error::SyncRunning);
        }
        engine.control.start_run();
        *runner = Some(std::thread::current().id());
        Ok(Running(engine))
    }
}

fn empty_report(stopped: StopReason) -> SyncReport {
    SyncReport {
        committed: 0,
        duplicates: 0,
        quarantined: 0,
        pending: 0,
        bytes_sent: 0,
        retries: 0,
        untrusted_receipts: 0,
        receipt_problem: None,
        stopped,
    }
}

fn add(total: &mut SyncReport, pass: &SyncReport) {
    total.committed += pass.committed;
    total.duplicates += pass.duplicates;
    total.quarantined += pass.quarantined;
    total.bytes_sent += pass.bytes_sent;
    total.retries += pass.retries;
    total.untrusted_receipts += pass.untrusted_receipts;
    total.receipt_problem = pass.receipt_problem.or(total.receipt_problem);
    total.pending = pass.pending;
    total.stopped = pass.stopped;
}

impl Engine {
    /// Sends what is due, within `budget` (`None`: the default budget). Returns what the run
    /// did and why it stopped; transport failures are never errors (they are rescheduled).
    /// Only one sync runs at a time: a second gets [`Error::SyncRunning`].
    pub fn sync(&self, budget: Option<Duration>) -> Result<SyncReport> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::EngineClosed);
        }
        let _running = Running::start(self)?;
        self.emit(&Event::SyncStarted);
        let deadline = Instant::now() + budget.unwrap_or(self.opts.default_budget).min(MAX_BUDGET);
        let report = self.passes(deadline)?;
        self.after_run(&report)?;
        self.emit(&Event::SyncFinished(report));
        Ok(report)
    }

    fn passes(&self, deadline: Instant) -> Result<SyncReport> {
        let mut total = empty_report(StopReason::Drained);
        loop {
            if let Some(h) = self.control.hold().filter(|h| *h != Hold::Yield) {
                total.stopped = StopReason::Held(h);
                total.pending = self.with_store(|s| s.pending_count())?;
                return Ok(total);
            }
            let transport = match self.stored_transport() {
                Ok(t) => t,
                // Not registered yet: nothing can be sent; the app registers and activates.
                Err(Error::NotRegistered) => {
                    total.stopped = StopReason::NeedsActivation;
                    total.pending = self.with_store(|s| s.pending_count())?;
                    return Ok(total);
                }
                Err(e) => return Err(e),
            };
            let mut guard = lock(&self.store);
            let store = guard.as_mut().ok_or(Error::EngineClosed)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let pass = sync::sync_blocking(store, &transport, self.sync_options(left))?;
            self.refresh_facts(store)?;
            drop(guard);
            add(&mut total, &pass);
            if pass.stopped != StopReason::Held(Hold::Yield) {
                return Ok(total);
            }
            // Let every waiting call take the store, then go on with what is left.
            while self.control.calls_waiting() {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.control.clear_held();
        }
    }

    fn sync_options(&self, budget: Duration) -> SyncOptions {
        let listener = lock(&self.listener).clone();
        let progress: Option<sync::engine::ProgressFn> = listener.map(|l| {
            let f: sync::engine::ProgressFn = Arc::new(move |p: &sync::Progress| l.on_progress(p));
            f
        });
        let control: Arc<dyn RunControl> = self.control.clone();
        SyncOptions {
            budget,
            backoff: self.opts.backoff,
            seed: self.opts.seed(),
            progress,
            control: Some(control),
        }
    }

    /// Tells the app why the run waits, if something is left to send.
    fn after_run(&self, report: &SyncReport) -> Result<()> {
        let wait = match report.stopped {
            StopReason::Held(h) => Wait::from_hold(h),
            StopReason::NeedsActivation => Some(Wait::NeedsActivation),
            StopReason::Drained | StopReason::Budget if report.pending > 0 => self
                .with_store(|s: &mut Store| s.next_due_at())?
                .filter(|at| *at > self.opts.clock().now())
                .map(|until| Wait::Backoff { until }),
            StopReason::Drained | StopReason::Budget => None,
        };
        if let Some(w) = wait {
            self.emit(&Event::SyncWaiting(w));
        }
        Ok(())
    }
}
