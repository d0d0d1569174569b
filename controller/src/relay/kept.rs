//! Answers kept for a while, each worked out once however many ask for it at the same
//! time: a weftd opens its span watches together, and after a replica goes away every
//! node's weftd reconnects at once, so without this each request would cost reviews of
//! its own on the apiserver.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// One answer, or the one computation of it that callers wait on; with when it lapses.
type Slot<V> = Arc<OnceCell<(V, Instant)>>;

/// Answers by a 32-byte key (a digest: never a secret itself).
pub struct Kept<V> {
    slots: Mutex<HashMap<[u8; 32], Slot<V>>>,
    /// Slots held at most; past it lapsed and idle ones go, and a new key that still
    /// finds no room is worked out without being kept.
    most: usize,
}

impl<V: Clone> Kept<V> {
    pub fn new(most: usize) -> Kept<V> {
        Kept {
            slots: Mutex::default(),
            most,
        }
    }

    /// The answer kept under `key`, or the one `compute` gives (kept for `lasts(answer)`).
    /// Callers asking for a key while it is being worked out wait for that answer; a
    /// failed computation is kept by no one, so the next caller tries again.
    pub async fn get_or_try<E, F, Fut>(
        &self,
        key: [u8; 32],
        lasts: impl FnOnce(&V) -> Duration,
        compute: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = self.slot(key);
        let (answer, _) = slot
            .get_or_try_init(|| async {
                let answer = compute().await?;
                let until = Instant::now() + lasts(&answer);
                Ok::<_, E>((answer, until))
            })
            .await?;
        Ok(answer.clone())
    }

    /// The live slot for `key`, or a new one in place of a lapsed answer.
    fn slot(&self, key: [u8; 32]) -> Slot<V> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(&key) {
            let lapsed = slot.get().is_some_and(|(_, until)| *until <= now);
            if !lapsed {
                return slot.clone();
            }
        }
        if slots.len() >= self.most {
            slots.retain(|_, slot| match slot.get() {
                Some((_, until)) => *until > now,
                // Being worked out by someone holding it.
                None => Arc::strong_count(slot) > 1,
            });
        }
        let slot = Slot::default();
        if slots.len() < self.most || slots.contains_key(&key) {
            slots.insert(key, slot.clone());
        }
        slot
    }

    /// Slots held now (answers and computations under way).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
#[path = "../tests/relay_kept.rs"]
mod tests;
