//! Reader slots (Guarantee 7): streams and long polls together hold at most `--max-readers`
//! connections (half the connection cap by default); past it a new one is answered 503 +
//! `Retry-After` at once instead of waiting. So however many readers come, the other half of
//! the connection slots stays free for publishes and health checks.
//!
//! Before, 1024 streams with a `read` token took every connection slot, and every publish and
//! `/healthz` waited 10 s for a 503 "too many connections" for as long as they stayed.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

#[derive(Debug)]
pub struct ReaderSlots {
    /// One permit per reader slot; a permit is held for a stream's or long poll's life.
    slots: Arc<Semaphore>,
    max: usize,
}

/// A reader's slot, given back when dropped (the stream ends, the long poll answers).
#[derive(Debug)]
pub struct ReaderSlot {
    /// Held, never read: dropping it frees the slot.
    _permit: OwnedSemaphorePermit,
}

impl ReaderSlots {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot now, or 503 at once.
    pub fn enter(&self) -> Result<ReaderSlot, ApiError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| ReaderSlot { _permit: permit })
            .map_err(|_| ApiError::ReadersFull(self.max))
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_a_reader_is_refused_at_once_and_a_leaving_one_frees_its_slot() {
        let slots = ReaderSlots::new(2);
        let first = slots.enter().unwrap();
        let _second = slots.enter().unwrap();
        assert!(matches!(slots.enter(), Err(ApiError::ReadersFull(2))));
        assert_eq!(slots.in_use(), 2);
        drop(first);
        assert!(slots.enter().is_ok());
    }
}
