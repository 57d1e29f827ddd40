//! The hand-over between two captures' uploads in one sync run (ADR 0022, amendment): the
//! next capture's creations and offset checks go at once, but its PATCHes wait until the
//! previous capture can no longer use every PATCH turn — its lanes still sending are fewer
//! than the PATCHes the sizing lets fly, or its upload ended. The link stays full across the
//! boundary, and the older capture's bytes still go first: it is committed first unless the
//! newer one's remaining bytes are fewer than its last PATCH's.

use std::cell::Cell;

/// Opened once by the capture before; awaited by the capture after.
#[derive(Default)]
pub(super) struct Tail {
    open: Cell<bool>,
    notify: tokio::sync::Notify,
}

impl Tail {
    /// Lets the next capture's PATCHes go (idempotent).
    pub(super) fn open(&self) {
        if !self.open.replace(true) {
            self.notify.notify_waiters();
        }
    }

    /// Waits until [`Self::open`] was called.
    pub(super) async fn wait(&self) {
        while !self.open.get() {
            // A `Notified` created before the check receives `notify_waiters` even if it was
            // not yet polled.
            let opened = self.notify.notified();
            if self.open.get() {
                return;
            }
            opened.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_goes_once_the_tail_opens_and_not_before() {
        let tail = Tail::default();
        let passed = Cell::new(false);
        let waiter = async {
            tail.wait().await;
            passed.set(true);
        };
        let opener = async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            assert!(!passed.get(), "went before the tail opened");
            tail.open();
            tail.open();
        };
        tokio::join!(waiter, opener);
        assert!(passed.get());
        // An open tail lets a late waiter through at once.
        tail.wait().await;
    }
}
