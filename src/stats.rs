//! The service's numbers, in one place: `/stats` reads them, and `/metrics` is rendered from
//! them, so the two can never disagree.
//!
//! Per partition, the worker publishes the lifetime totals of its last commit (loaded from the
//! database at start, so they continue across restarts); on a shared PostgreSQL store,
//! `/stats` and `/metrics` also read the totals every replica committed. `rejected` counts events refused by
//! validation since this process started; they are never stored.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::store::Totals;

/// Numbers of one partition, written by its worker and read by HTTP handlers.
#[derive(Debug, Default)]
pub struct PartitionStats {
    received: AtomicU64,
    unique_processed: AtomicU64,
    duplicate_dropped: AtomicU64,
    /// False once the worker task has ended (panic or drain).
    worker_alive: AtomicBool,
    /// False while the last commit attempt failed.
    store_ok: AtomicBool,
}

impl PartitionStats {
    pub fn new(totals: Totals) -> Self {
        let stats = Self::default();
        stats.publish_totals(totals);
        stats.worker_alive.store(true, Ordering::Relaxed);
        stats.store_ok.store(true, Ordering::Relaxed);
        stats
    }

    /// Takes in totals from a commit or a read of the shared store. Counters only grow, so a
    /// field never moves back when an older snapshot arrives after a newer one.
    pub fn publish_totals(&self, totals: Totals) {
        self.received.fetch_max(totals.received, Ordering::Relaxed);
        self.unique_processed
            .fetch_max(totals.unique_processed, Ordering::Relaxed);
        self.duplicate_dropped
            .fetch_max(totals.duplicate_dropped, Ordering::Relaxed);
    }

    /// Lifetime totals. Each field is exact as of some commit; under concurrent commits the
    /// three may come from neighbouring commits, so read after publishes have returned when
    /// you need `received == unique + duplicate` to the event.
    pub fn totals(&self) -> Totals {
        Totals {
            received: self.received.load(Ordering::Relaxed),
            unique_processed: self.unique_processed.load(Ordering::Relaxed),
            duplicate_dropped: self.duplicate_dropped.load(Ordering::Relaxed),
        }
    }

    pub fn set_worker_alive(&self, alive: bool) {
        self.worker_alive.store(alive, Ordering::Relaxed);
    }

    pub fn worker_alive(&self) -> bool {
        self.worker_alive.load(Ordering::Relaxed)
    }

    pub fn set_store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
    }

    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }
}

/// Service-wide numbers that belong to no partition.
#[derive(Debug)]
pub struct ServiceStats {
    started: Instant,
    rejected: AtomicU64,
}

impl ServiceStats {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            rejected: AtomicU64::new(0),
        }
    }

    pub fn add_rejected(&self, events: u64) {
        self.rejected.fetch_add(events, Ordering::Relaxed);
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Default for ServiceStats {
    fn default() -> Self {
        Self::new()
    }
}
