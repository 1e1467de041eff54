//! One partition's sending side and what travels through its queue: [`Job`]s with the capacity
//! and memory they hold, answered on a oneshot after their commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::wakers::{TopicWait, TopicWakers, wait_for};

use crate::budget::Charge;
use crate::event::Event;
use crate::stats::{PartitionSnapshot, PartitionStats};
use crate::store::Totals;

/// One request's events for one partition, with the channel to answer on.
#[derive(Debug)]
pub(crate) struct Job {
    /// Shared, so a commit can hand them to a writer thread without copying.
    pub(super) events: Arc<[Event]>,
    /// Answered by the worker after the commit holding `events`; dropped unanswered only if
    /// the worker dies, which the waiting request reads as "unavailable".
    pub(super) reply: oneshot::Sender<Result<JobOutcome, CommitFailed>>,
    /// Queue capacity held by `events`, returned when the job is dropped after its reply.
    pub(super) _permit: OwnedSemaphorePermit,
    /// The events' bytes on the in-flight budget and in the partition's queued-bytes gauge,
    /// both given back when the job is dropped after its reply.
    pub(super) _bytes: QueuedBytes,
}

/// What one job's events turned out to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JobOutcome {
    pub(super) unique: usize,
    pub(super) duplicate: usize,
}

/// The job's batch was not committed (the reason is logged by the worker).
#[derive(Debug, Clone)]
pub(crate) struct CommitFailed(pub(super) String);

/// A job's bytes: charged on the budget and counted in its partition's queued bytes.
#[derive(Debug)]
pub(super) struct QueuedBytes {
    _charge: Charge,
    bytes: usize,
    gauge: Arc<AtomicUsize>,
}

impl QueuedBytes {
    pub(super) fn new(charge: Charge, bytes: usize, gauge: Arc<AtomicUsize>) -> Self {
        gauge.fetch_add(bytes, Ordering::Relaxed);
        Self {
            _charge: charge,
            bytes,
            gauge,
        }
    }
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The sending side of one partition. Lives in [`super::Ingest`] for the life of the
/// service; the queue closes when the worker is told to drain.
#[derive(Debug)]
pub struct PartitionHandle {
    pub(super) id: usize,
    /// To the worker. Capacity equals `queue_capacity`; since a job holds at least one
    /// permit, a send with permits in hand never finds the channel full.
    pub(super) jobs: mpsc::Sender<Job>,
    /// Free queue capacity in events. Closed at shutdown so waiting requests fail fast.
    pub(super) capacity: Arc<Semaphore>,
    pub(super) queue_capacity: usize,
    /// Memory of the events queued or committing in this partition.
    pub(super) queued_bytes: Arc<AtomicUsize>,
    /// Written by the worker, read here.
    pub(super) stats: Arc<PartitionStats>,
    /// Bumped after every commit that stored new events (by this process's worker, or by a
    /// store that hears of other replicas' commits): readers of the partition wait on it.
    pub(super) committed: Arc<watch::Sender<CommitMark>>,
    /// The readers of single topics, woken by the commits of their topic only.
    pub(super) topics: Arc<TopicWakers>,
}

/// The latest commit that stored new events in a partition: how many such commits this
/// process has seen, and when the last one was seen (for delivery lag).
#[derive(Debug, Clone, Copy)]
pub struct CommitMark {
    pub generation: u64,
    pub at: std::time::Instant,
}

impl CommitMark {
    pub(super) fn first() -> Self {
        Self {
            generation: 0,
            at: std::time::Instant::now(),
        }
    }
}

/// Marks a new commit on `committed`.
pub(super) fn mark_commit(committed: &watch::Sender<CommitMark>) {
    committed.send_modify(|mark| {
        mark.generation += 1;
        mark.at = std::time::Instant::now();
    });
}

impl PartitionHandle {
    /// Events accepted into this partition and not yet committed and answered.
    pub fn queue_depth(&self) -> usize {
        self.queue_capacity
            .saturating_sub(self.capacity.available_permits())
    }

    /// Memory of the events accepted into this partition and not yet committed and answered.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// This partition's numbers and state now.
    pub fn snapshot(&self) -> PartitionSnapshot {
        PartitionSnapshot {
            id: self.id,
            totals: self.stats.totals(),
            queue_depth: self.queue_depth(),
            queue_bytes: self.queued_bytes(),
            worker_alive: self.stats.worker_alive(),
            store_ok: self.stats.store_ok(),
        }
    }

    /// Wakes on every later commit that stores new events in this partition.
    pub fn commits(&self) -> watch::Receiver<CommitMark> {
        self.committed.subscribe()
    }

    /// Wakes on every later commit that stores new events of `topic` (in this partition).
    pub fn topic_commits(&self, topic: &str) -> TopicWait {
        wait_for(&self.topics, topic)
    }

    /// A commit to this partition heard through the store (any replica's, this one's
    /// included): the readers of `topics` wake, or every reader of the partition when the
    /// topics are unknown.
    pub fn mark_remote_commit(&self, topics: Option<&[String]>) {
        mark_commit(&self.committed);
        match topics {
            Some(topics) => topics.iter().for_each(|t| self.topics.wake(t)),
            None => self.topics.wake_all(),
        }
    }

    /// Takes in totals read from a store other processes commit to (never moving back).
    pub(super) fn publish_totals(&self, totals: Totals) {
        self.stats.publish_totals(totals);
    }
}
