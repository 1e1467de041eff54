//! The service's numbers, in one place. Workers and handlers write them into
//! [`PartitionStats`] and [`ServiceStats`]; a [`Snapshot`] reads them all at once, and `/stats`,
//! `/readyz` and `/metrics` are rendered from that one snapshot, so they can never disagree
//! (and "is this partition up" is decided in one place: [`PartitionSnapshot::problem`]).
//!
//! Per partition, the worker publishes the lifetime totals of its last commit (loaded from the
//! database at start, so they continue across restarts); on a shared PostgreSQL store,
//! `/stats` and `/metrics` also read the totals every replica committed. `rejected` counts events refused by
//! validation since this process started; they are never stored.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::disk::DiskNumbers;
use crate::store::{Stored, Totals};

/// Numbers of one partition, written by its worker and read by HTTP handlers.
#[derive(Debug, Default)]
pub(crate) struct PartitionStats {
    received: AtomicU64,
    unique_processed: AtomicU64,
    duplicate_dropped: AtomicU64,
    /// False once the worker task has ended (panic or drain).
    worker_alive: AtomicBool,
    /// False while the last commit attempt failed.
    store_ok: AtomicBool,
}

impl PartitionStats {
    pub(crate) fn new(totals: Totals) -> Self {
        let stats = Self::default();
        stats.publish_totals(totals);
        stats.worker_alive.store(true, Ordering::Relaxed);
        stats.store_ok.store(true, Ordering::Relaxed);
        stats
    }

    /// Takes in totals from a commit or a read of the shared store. Counters only grow, so a
    /// field never moves back when an older snapshot arrives after a newer one.
    pub(crate) fn publish_totals(&self, totals: Totals) {
        self.received.fetch_max(totals.received, Ordering::Relaxed);
        self.unique_processed
            .fetch_max(totals.unique_processed, Ordering::Relaxed);
        self.duplicate_dropped
            .fetch_max(totals.duplicate_dropped, Ordering::Relaxed);
    }

    /// Lifetime totals. Each field is exact as of some commit; under concurrent commits the
    /// three may come from neighbouring commits, so read after publishes have returned when
    /// you need `received == unique + duplicate` to the event.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            received: self.received.load(Ordering::Relaxed),
            unique_processed: self.unique_processed.load(Ordering::Relaxed),
            duplicate_dropped: self.duplicate_dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_worker_alive(&self, alive: bool) {
        self.worker_alive.store(alive, Ordering::Relaxed);
    }

    pub(crate) fn worker_alive(&self) -> bool {
        self.worker_alive.load(Ordering::Relaxed)
    }

    pub(crate) fn set_store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
    }

    pub(crate) fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }
}

/// One partition's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionSnapshot {
    pub id: usize,
    pub totals: Totals,
    /// Events accepted and not yet committed and answered.
    pub queue_depth: usize,
    /// Their memory, charged on the in-flight budget.
    pub queue_bytes: usize,
    pub worker_alive: bool,
    pub store_ok: bool,
}

impl PartitionSnapshot {
    /// Why this partition cannot take publishes, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if !self.worker_alive {
            Some("worker stopped")
        } else if !self.store_ok {
            Some("store not writable or its database is missing (see the log)")
        } else {
            None
        }
    }

    pub fn up(&self) -> bool {
        self.problem().is_none()
    }
}

/// The whole service's numbers at one moment: what `/stats`, `/readyz` and `/metrics` show.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub partitions: Vec<PartitionSnapshot>,
    /// The partitions' totals summed.
    pub totals: Totals,
    pub rejected: u64,
    pub uptime_seconds: f64,
    pub shutting_down: bool,
    /// The SQLite data dir's disk, as last sampled (`None` on PostgreSQL).
    pub disk: Option<DiskNumbers>,
    /// Why publishes are refused for lack of disk space, if they are.
    pub low_disk: Option<String>,
    /// What retention leaves stored (`None`: every event ever stored is kept).
    pub stored: Option<Stored>,
    /// Streams and long polls holding a reader slot (`--max-readers`).
    pub readers: usize,
}

impl Snapshot {
    /// Takes the service-wide numbers and each partition's (id order).
    pub fn new(
        partitions: Vec<PartitionSnapshot>,
        service: &ServiceStats,
        shutting_down: bool,
    ) -> Self {
        let mut totals = Totals::default();
        for partition in &partitions {
            totals += partition.totals;
        }
        Self {
            partitions,
            totals,
            rejected: service.rejected(),
            uptime_seconds: service.uptime_seconds(),
            shutting_down,
            disk: None,
            low_disk: None,
            stored: None,
            readers: 0,
        }
    }

    /// Why the service is not ready; empty when it is.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.shutting_down {
            reasons.push("shutting down".to_string());
        }
        if let Some(low) = &self.low_disk {
            reasons.push(low.clone());
        }
        for partition in &self.partitions {
            if let Some(problem) = partition.problem() {
                reasons.push(format!("partition {}: {problem}", partition.id));
            }
        }
        reasons
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(
        id: usize,
        received: u64,
        worker_alive: bool,
        store_ok: bool,
    ) -> PartitionSnapshot {
        PartitionSnapshot {
            id,
            totals: Totals {
                received,
                unique_processed: received,
                duplicate_dropped: 0,
            },
            queue_depth: 0,
            queue_bytes: 0,
            worker_alive,
            store_ok,
        }
    }

    #[test]
    fn a_snapshot_sums_partitions_and_names_every_reason_not_to_be_ready() {
        let service = ServiceStats::new();
        service.add_rejected(2);
        let ready = Snapshot::new(
            vec![partition(0, 3, true, true), partition(1, 4, true, true)],
            &service,
            false,
        );
        assert_eq!(ready.totals.received, 7);
        assert_eq!(ready.rejected, 2);
        assert!(ready.not_ready_reasons().is_empty());
        let broken = Snapshot::new(
            vec![partition(0, 0, false, true), partition(1, 0, true, false)],
            &service,
            true,
        );
        let reasons = broken.not_ready_reasons();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[1].starts_with("partition 0: worker stopped"));
        assert!(reasons[2].starts_with("partition 1: store not writable"));
        assert!(!broken.partitions[0].up() && !broken.partitions[1].up());
    }
}
