//! One delivery of a capture at a time per replica (review of issue 17): concurrent deliveries
//! of the same (device, capture id) wait here, so only the first reads, hashes and decrypts
//! the parts; each one after it starts with the read phase again and finds the first one's
//! stored answer (a replay, no part read). Without the gate, N copies of one commit sent at
//! once bought N full content phases, none of them counted against the refusal budget.
//!
//! The gate only throttles: it decides nothing (exactly-once stays with the database, ADR
//! 0019), so keeping it in one replica's memory is safe; across replicas the copies are at
//! most one content phase per replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// A delivery's turn: the lock its copies wait on.
type Turn = tokio::sync::Mutex<()>;

/// The keys of deliveries in progress, each with the lock its copies wait on.
#[derive(Default)]
pub(crate) struct CommitGate {
    keys: Mutex<HashMap<(String, String), Weak<Turn>>>,
}

impl CommitGate {
    /// Waits until no other delivery of `(device, capture)` is in progress in this replica;
    /// the guard lets the next one in when dropped.
    pub(crate) async fn enter(&self, device: &str, capture: &str) -> OwnedMutexGuard<()> {
        let lock = self.lock_of(device, capture);
        lock.lock_owned().await
    }

    fn lock_of(&self, device: &str, capture: &str) -> Arc<Turn> {
        // A poisoned map is still a valid map: no invariant spans the panic.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        // Forget keys no delivery holds any more (as many as deliveries in flight).
        keys.retain(|_, lock| lock.strong_count() > 0);
        let key = (device.to_string(), capture.to_string());
        if let Some(lock) = keys.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(Turn::new(()));
        keys.insert(key, Arc::downgrade(&lock));
        lock
    }

    /// Keys remembered (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().map(|k| k.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_of_one_delivery_take_turns_and_keys_are_forgotten() {
        let gate = Arc::new(CommitGate::default());
        let first = gate.enter("d", "c").await;
        let g = gate.clone();
        let mut second = tokio::spawn(async move { g.enter("d", "c").await });
        // Another capture is not held up by the first.
        let other = gate.enter("d", "other").await;
        tokio::select! {
            _ = &mut second => panic!("a copy entered while the first was in progress"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
        drop(first);
        let second = second.await.expect("the copy entered once the first left");
        drop((second, other));
        let _again = gate.enter("x", "y").await;
        assert_eq!(gate.len(), 1, "keys no delivery holds are forgotten");
    }
}
