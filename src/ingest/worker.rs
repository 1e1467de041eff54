//! The partition worker: takes jobs in queue order, gathers a batch, commits it in one
//! transaction through its [`PartitionWriter`], then answers every job of the batch.
//!
//! The loop only decides what comes next; each job it can do is a named step:
//! [`PartitionWorker::commit`] (front cache, one transaction, cache update, answers),
//! [`PartitionWorker::check`] (every second: after a failed commit a probe write, so readiness
//! turns green again without a publish; otherwise a check that the database is still there),
//! and [`PartitionWorker::recover`] (after a panic in the writer: reopen it and start a new
//! cache). The writer keeps its own blocking work off this task (see `store`), so while one
//! batch commits the next one queues up behind it, which is what turns many concurrent
//! single-event requests into one group commit.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::batch::{Batch, gather};
use super::partition::{CommitFailed, CommitMark, Job, JobOutcome, PartitionHandle, mark_commit};
use super::wakers::TopicWakers;
use crate::dedup::DedupCache;
use crate::stats::PartitionStats;
use crate::store::{CommitBatch, PartitionWriter, Store, StoreError};
use crate::telemetry::PartitionMetrics;

/// How often an idle worker checks its store (see [`PartitionWorker::check`]).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a worker needs besides its writer.
#[derive(Clone)]
pub(super) struct WorkerSettings {
    pub(super) queue_capacity: usize,
    pub(super) batch_max_events: usize,
    pub(super) batch_linger: Duration,
    pub(super) cache_keys: usize,
    /// The store's `--dedup-window`: the front cache holds no key longer.
    pub(super) dedup_window: Option<Duration>,
    /// To reopen the writer after a panic lost it.
    pub(super) store: Arc<dyn Store>,
    /// Flips to true when the service shuts down.
    pub(super) drain: watch::Receiver<bool>,
}

pub(super) struct PartitionWorker {
    id: usize,
    /// Jobs of this partition in acceptance order. Closed by the worker itself on drain.
    queue: mpsc::Receiver<Job>,
    writer: Box<dyn PartitionWriter>,
    cache: DedupCache,
    settings: WorkerSettings,
    stats: Arc<PartitionStats>,
    metrics: PartitionMetrics,
    committed: Arc<watch::Sender<CommitMark>>,
    /// Readers of single topics: woken for the topics a commit stored events of.
    topics: Arc<TopicWakers>,
}

/// What the worker does next.
enum Next {
    Job(Option<Job>),
    Drain,
    Check,
}

/// Wakes the readers of each topic `batch` stored new events of (`inserted`: per candidate).
fn wake_topics(topics: &TopicWakers, batch: &CommitBatch, inserted: &[bool]) {
    if topics.topics_waited_on() == 0 {
        return;
    }
    let mut last: Option<&str> = None;
    for (event, _) in batch
        .candidates()
        .into_iter()
        .zip(inserted)
        .filter(|(_, new)| **new)
    {
        // Consecutive events of one topic (the common shape of a batch) wake it once.
        if last != Some(event.topic.as_str()) {
            topics.wake(&event.topic);
            last = Some(event.topic.as_str());
        }
    }
}

/// Marks the partition dead however the worker ends, a panic of the task included.
struct AliveGuard(Arc<PartitionStats>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.set_worker_alive(false);
    }
}

impl PartitionWorker {
    /// Starts the worker of partition `id` on `writer`; returns the partition's sending side
    /// and the worker task.
    pub(super) fn spawn(
        id: usize,
        writer: Box<dyn PartitionWriter>,
        settings: WorkerSettings,
        metrics: PartitionMetrics,
    ) -> (PartitionHandle, JoinHandle<()>) {
        let stats = Arc::new(PartitionStats::new(writer.totals()));
        let (jobs, queue) = mpsc::channel(settings.queue_capacity.max(1));
        let handle = PartitionHandle {
            id,
            jobs,
            capacity: Arc::new(Semaphore::new(settings.queue_capacity)),
            queue_capacity: settings.queue_capacity,
            queued_bytes: Arc::default(),
            stats: stats.clone(),
            committed: Arc::new(watch::channel(CommitMark::first()).0),
            topics: Arc::default(),
        };
        let committed = handle.committed.clone();
        let topics = handle.topics.clone();
        let worker = Self {
            id,
            queue,
            writer,
            cache: DedupCache::new(settings.cache_keys, settings.dedup_window),
            settings,
            stats,
            metrics,
            committed,
            topics,
        };
        (handle, tokio::spawn(worker.run()))
    }

    async fn run(mut self) {
        let _alive = AliveGuard(self.stats.clone());
        let mut batch = Batch::new(self.settings.batch_max_events);
        let mut draining = false;
        let mut drain = self.settings.drain.clone();
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                job = self.queue.recv() => Next::Job(job),
                _ = drain.wait_for(|drain| *drain), if !draining => Next::Drain,
                _ = check.tick() => Next::Check,
            };
            match next {
                Next::Job(None) => break,
                Next::Job(Some(first)) => {
                    let jobs = gather(
                        &mut self.queue,
                        &mut batch,
                        first,
                        self.settings.batch_linger,
                        |job| job.events.len(),
                    )
                    .await;
                    if !self.commit(jobs).await {
                        if !self.recover().await {
                            break;
                        }
                    } else if !self.stats.store_ok() {
                        // Probe a full interval after the failure, not at once: an overdue tick
                        // would fire immediately and flip readiness back before anyone saw it.
                        check.reset();
                    }
                }
                Next::Drain => {
                    // Refuse new jobs but keep receiving the ones already queued.
                    self.queue.close();
                    draining = true;
                }
                Next::Check => self.check().await,
            }
        }
        tracing::debug!(partition = self.id, "partition worker stopped");
    }

    /// Commits one batch and answers its jobs. Returns false if the writer panicked: the
    /// batch's requests see a dropped reply and answer 503 (nothing of it was committed: its
    /// transaction died with it), and the worker must [`recover`](Self::recover).
    async fn commit(&mut self, jobs: Vec<Job>) -> bool {
        let (batch, slots) = plan_batch(&mut self.cache, &jobs, crate::clock::now_ms());
        self.metrics
            .batch_size
            .record(jobs.iter().map(|j| j.events.len()).sum::<usize>() as f64);
        let started = std::time::Instant::now();
        let committed = AssertUnwindSafe(self.writer.commit_batch(&batch))
            .catch_unwind()
            .await;
        self.metrics
            .commit_duration
            .record(started.elapsed().as_secs_f64());
        match committed {
            Ok(Ok(inserted)) => {
                let outcomes = settle(&mut self.cache, &batch, &slots, &inserted, &jobs);
                self.stats.publish_totals(self.writer.totals());
                self.stats.set_store_ok(true);
                if inserted.iter().any(|new| *new) {
                    mark_commit(&self.committed);
                    wake_topics(&self.topics, &batch, &inserted);
                }
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    // The requester may have gone away; its events are committed regardless.
                    let _ = job.reply.send(Ok(outcome));
                }
                true
            }
            Ok(Err(StoreError::WriterGone(path))) => {
                tracing::error!(
                    partition = self.id,
                    path,
                    "the writer stopped; reopening it"
                );
                false
            }
            Ok(Err(e)) => {
                tracing::error!(partition = self.id, error = %e, "batch commit failed; nothing of it was stored");
                self.stats.set_store_ok(false);
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err(CommitFailed("the batch could not be committed".into())));
                }
                true
            }
            Err(_) => {
                tracing::error!(
                    partition = self.id,
                    "partition writer panicked; reopening it"
                );
                false
            }
        }
    }

    /// The idle check: after a failed commit, a probe write (readiness turns green when the
    /// fault is gone); otherwise only that the database is still there (a `stat`).
    async fn check(&mut self) {
        if self.stats.store_ok() {
            if let Err(e) = self.writer.check_present() {
                tracing::error!(partition = self.id, error = %e, "partition database lost; readiness is red");
                self.stats.set_store_ok(false);
            }
            return;
        }
        match self.writer.probe().await {
            Ok(()) => {
                tracing::info!(partition = self.id, "store writable again");
                self.stats.set_store_ok(true);
            }
            Err(e) => tracing::warn!(partition = self.id, error = %e, "store still failing"),
        }
    }

    /// After a panic: a new writer and an empty cache (the old cache may hold keys of the
    /// batch that never committed). Returns false if the store cannot be reopened: the
    /// partition stops and readiness stays red.
    async fn recover(&mut self) -> bool {
        match self.settings.store.open_writer(self.id).await {
            Ok(writer) => {
                self.writer = writer;
                self.cache = DedupCache::new(self.settings.cache_keys, self.settings.dedup_window);
                self.stats.publish_totals(self.writer.totals());
                true
            }
            Err(e) => {
                tracing::error!(partition = self.id, error = %e, "cannot reopen the store; partition stopped, readiness is red");
                false
            }
        }
    }
}

/// Per event of the batch, in order: its index among the store's candidates, or `None` when
/// the front cache already knows it as a duplicate.
type Slots = Vec<Option<usize>>;

/// The store's part of a batch: every event the front cache does not know.
fn plan_batch(cache: &mut DedupCache, jobs: &[Job], now_ms: i64) -> (CommitBatch, Slots) {
    let mut batch = CommitBatch::default();
    let mut slots = Vec::new();
    let mut candidates = 0;
    for job in jobs {
        let known: Vec<bool> = job
            .events
            .iter()
            .map(|e| cache.contains(&e.topic, &e.event_id, now_ms))
            .collect();
        for &is_known in &known {
            slots.push((!is_known).then(|| {
                candidates += 1;
                candidates - 1
            }));
        }
        batch.push(job.events.clone(), known.into_iter().map(|k| !k));
    }
    (batch, slots)
}

/// After a commit: remembers the committed keys in the cache and counts each job's unique
/// and duplicate events.
fn settle(
    cache: &mut DedupCache,
    batch: &CommitBatch,
    slots: &Slots,
    inserted: &[bool],
    jobs: &[Job],
) -> Vec<JobOutcome> {
    // Every candidate is now stored (new or not), so all are duplicates from here on. With a
    // dedup window only first commits enter, stamped now (see `dedup`).
    let now_ms = crate::clock::now_ms();
    for (event, new) in batch.candidates().into_iter().zip(inserted) {
        if *new || !cache.has_window() {
            cache.insert(&event.topic, &event.event_id, now_ms);
        }
    }
    let mut slots = slots.iter();
    jobs.iter()
        .map(|job| {
            let mut outcome = JobOutcome::default();
            for (event, slot) in job.events.iter().zip(slots.by_ref()) {
                if slot.is_some_and(|i| inserted[i]) {
                    outcome.unique += 1;
                } else {
                    tracing::debug!(topic = %event.topic, event_id = %event.event_id, "duplicate dropped");
                    outcome.duplicate += 1;
                }
            }
            outcome
        })
        .collect()
}
