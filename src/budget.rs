//! Memory budgets in bytes: a pool that requests draw from for as long as they hold memory.
//!
//! The in-flight budget (`--max-inflight-body-mib`) is charged by a publish as its body bytes
//! arrive, then for its parsed events; the events' charge travels inside their queue jobs
//! and is given back only when the worker has committed and answered them, whether or not the
//! client is still connected. So bodies being read plus events queued or committing never
//! exceed the budget, whatever clients do. The read budget bounds `/events` responses the
//! same way until their bytes are written to the socket.
//!
//! Granularity is 1 KiB (a semaphore permit each), rounding every charge up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A shared pool of bytes.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

/// Why a charge could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// Not enough free budget within the wait.
    #[error("memory budget exhausted")]
    Exhausted,
    /// More than the whole budget was asked for; waiting would never succeed.
    #[error("larger than the whole memory budget")]
    TooLarge,
}

/// Bytes held from a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: MemoryBudget,
    permit: Option<OwnedSemaphorePermit>,
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> Self {
        let total_kib = kib(bytes).max(1);
        Self {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Bytes charged now (rounded to KiB).
    pub fn in_use_bytes(&self) -> usize {
        (self.total_kib - self.kib.available_permits().min(self.total_kib)) * 1024
    }

    /// An empty charge, to grow as bytes arrive.
    pub fn empty(&self) -> Charge {
        Charge {
            budget: self.clone(),
            permit: None,
        }
    }

    /// Takes `bytes`, waiting up to `wait` for them to come free.
    pub async fn charge(&self, bytes: usize, wait: Duration) -> Result<Charge, BudgetError> {
        let mut charge = self.empty();
        charge.grow_to(bytes, wait).await?;
        Ok(charge)
    }
}

impl Charge {
    /// Bytes held (rounded to KiB).
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits() * 1024)
    }

    /// Grows the charge to at least `bytes`, waiting up to `wait`. On failure it is unchanged.
    pub async fn grow_to(&mut self, bytes: usize, wait: Duration) -> Result<(), BudgetError> {
        let held = self
            .permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        let wanted = kib(bytes);
        if wanted <= held {
            return Ok(());
        }
        if wanted > self.budget.total_kib {
            return Err(BudgetError::TooLarge);
        }
        let more = u32::try_from(wanted - held).map_err(|_| BudgetError::TooLarge)?;
        let acquire = self.budget.kib.clone().acquire_many_owned(more);
        let permit = match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; a timeout is the only real failure.
            Ok(Err(_)) | Err(_) => return Err(BudgetError::Exhausted),
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        Ok(())
    }

    /// Gives back everything above `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = kib(bytes);
        if let Some(permit) = &mut self.permit {
            let extra = permit.num_permits().saturating_sub(keep);
            if extra > 0 {
                drop(permit.split(extra));
            }
        }
    }

    /// Moves up to `bytes` of this charge into a charge of its own.
    pub fn split_off(&mut self, bytes: usize) -> Charge {
        let taken = self.permit.as_mut().and_then(|permit| {
            let n = kib(bytes).min(permit.num_permits());
            if n == permit.num_permits() {
                None
            } else {
                permit.split(n)
            }
        });
        let permit = match taken {
            Some(part) => Some(part),
            // Everything (or nothing) is taken: hand over the whole permit.
            None if kib(bytes) > 0 => self.permit.take(),
            None => None,
        };
        Charge {
            budget: self.budget.clone(),
            permit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn charges_are_held_until_dropped_and_bounded_by_the_total() {
        let budget = MemoryBudget::new(10 * 1024);
        let mut a = budget.charge(4000, NO_WAIT).await.unwrap();
        assert_eq!(a.bytes(), 4096);
        a.grow_to(6 * 1024, NO_WAIT).await.unwrap();
        assert_eq!(budget.in_use_bytes(), 6 * 1024);
        assert_eq!(
            budget.charge(5 * 1024, NO_WAIT).await.unwrap_err(),
            BudgetError::Exhausted
        );
        assert_eq!(
            budget.charge(11 * 1024, NO_WAIT).await.unwrap_err(),
            BudgetError::TooLarge
        );
        let b = a.split_off(2 * 1024);
        assert_eq!((a.bytes(), b.bytes()), (4 * 1024, 2 * 1024));
        a.shrink_to(1024);
        assert_eq!(budget.in_use_bytes(), 3 * 1024);
        drop(a);
        drop(b);
        assert_eq!(budget.in_use_bytes(), 0);
    }

    /// The wait for room, on tokio's paused clock: a charge waits exactly its `wait` for bytes
    /// to come free, gets them when another charge is dropped in time, and fails after it.
    #[tokio::test(start_paused = true)]
    async fn a_charge_waits_its_whole_wait_and_no_longer() {
        let budget = MemoryBudget::new(4 * 1024);
        let held = budget.charge(4 * 1024, NO_WAIT).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            budget
                .charge(1024, Duration::from_secs(5))
                .await
                .unwrap_err(),
            BudgetError::Exhausted
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.charge(1024, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(4_999)).await;
        drop(held);
        let charge = waiting.await.unwrap().unwrap();
        assert_eq!(charge.bytes(), 1024);
        assert_eq!(started.elapsed(), Duration::from_millis(9_999));
    }

    #[tokio::test]
    async fn splitting_more_than_held_hands_over_everything() {
        let budget = MemoryBudget::new(10 * 1024);
        let mut a = budget.charge(2048, NO_WAIT).await.unwrap();
        let b = a.split_off(5000);
        assert_eq!((a.bytes(), b.bytes()), (0, 2048));
        assert_eq!(a.split_off(10).bytes(), 0);
        drop(b);
        assert_eq!(budget.in_use_bytes(), 0);
    }
}
