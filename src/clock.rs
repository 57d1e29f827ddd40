//! The clock seam: production uses the system clock; tests and simulations inject their own.
//! It owns the two kinds of time a sync run reads — wall time ([`Clock::now`]: capture times,
//! process windows, expiries, the retry schedule) and monotonic time for the run's budget
//! ([`Clock::instant`]) — and the run's waits ([`Clock::sleep`]), so a simulation with a
//! [`ManualClock`] runs hours of backoff in no real time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(any(test, feature = "testkit"))]
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// The future of [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of the current UTC time, of monotonic instants, and of waits.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;

    /// A monotonic instant (budgets and deadlines); the system's by default.
    fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Resolves after `d` has passed on this clock; a real timer (tokio) by default.
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to (tests, simulations). A [`Clock::sleep`] on it moves
/// it forward by the wait and resolves at once: virtual time.
#[cfg(any(test, feature = "testkit"))]
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Virtual>>);

#[cfg(any(test, feature = "testkit"))]
#[derive(Debug)]
struct Virtual {
    now: OffsetDateTime,
    /// The monotonic origin and how far the clock has moved forward from it.
    origin: Instant,
    elapsed: Duration,
}

#[cfg(any(test, feature = "testkit"))]
impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        ManualClock(Arc::new(Mutex::new(Virtual {
            now: at,
            origin: Instant::now(),
            elapsed: Duration::ZERO,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Virtual> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the wall time; the monotonic time moves only forward (by the gain, if any).
    pub fn set(&self, at: OffsetDateTime) {
        let mut g = self.state();
        let gain = at - g.now;
        if gain.is_positive() {
            g.elapsed += gain.unsigned_abs();
        }
        g.now = at;
    }

    pub fn advance(&self, by: time::Duration) {
        let mut g = self.state();
        g.now += by;
        if by.is_positive() {
            g.elapsed += by.unsigned_abs();
        }
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.state().now
    }

    fn instant(&self) -> Instant {
        let g = self.state();
        g.origin + g.elapsed
    }

    fn sleep(&self, d: Duration) -> Sleep {
        self.advance(time::Duration::try_from(d).unwrap_or(time::Duration::MAX));
        Box::pin(std::future::ready(()))
    }
}

/// The shared clock handle used across the engine.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_sleeps_in_virtual_time() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let c = ManualClock::new(t0);
        let i0 = c.instant();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let real = Instant::now();
        rt.block_on(c.sleep(Duration::from_secs(3600)));
        assert!(real.elapsed() < Duration::from_secs(60));
        assert_eq!(c.now(), t0 + time::Duration::hours(1));
        assert_eq!(c.instant() - i0, Duration::from_secs(3600));
        // Setting the wall time back does not move the monotonic time back.
        c.set(t0);
        assert_eq!(c.instant() - i0, Duration::from_secs(3600));
    }
}
