//! The partition worker: takes jobs in queue order, gathers a batch, commits it in one
//! transaction, then answers every job of the batch.
//!
//! Store calls block, so each commit runs on tokio's blocking pool (`spawn_blocking`), with
//! the store and cache moved in and back out: the worker still owns them exclusively, the
//! async threads never block, and while one batch commits the next one queues up behind it,
//! which is what turns many concurrent single-event requests into one group commit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};

use super::batch::Batch;
use super::{CommitFailed, Job, JobOutcome};
use crate::dedup::DedupCache;
use crate::metrics::PartitionMetrics;
use crate::stats::PartitionStats;
use crate::store::{PartitionWriter, Store, StoreError, Totals};

pub(super) struct PartitionWorker {
    pub(super) id: usize,
    /// Jobs of this partition in acceptance order. Closed by the worker itself on drain.
    pub(super) queue: mpsc::Receiver<Job>,
    /// Flips to true when the service shuts down.
    pub(super) drain: watch::Receiver<bool>,
    pub(super) store: Box<dyn PartitionWriter>,
    pub(super) cache: DedupCache,
    /// How to open the store and cache again after a panic lost them.
    pub(super) reopen: Reopen,
    pub(super) batch_max_events: usize,
    pub(super) batch_linger: Duration,
    pub(super) stats: Arc<PartitionStats>,
    pub(super) metrics: PartitionMetrics,
    /// Testing aid (`--debug-panic-on-topic`): panic while committing a batch holding this topic.
    pub(super) panic_on_topic: Option<String>,
}

pub(super) struct Reopen {
    pub(super) store: Arc<dyn Store>,
    pub(super) cache_keys: usize,
}

/// How often an idle worker checks its store: after a failed commit, a one-row write, so
/// readiness turns green again when the fault (lock, full disk) is gone even if no publish
/// arrives; otherwise a check that the database file is still there.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What the worker does next.
enum Next {
    Job(Option<Job>),
    Drain,
    Probe,
}

/// Marks the partition dead however the worker ends, a panic of the task included.
struct AliveGuard(Arc<PartitionStats>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.set_worker_alive(false);
    }
}

impl PartitionWorker {
    pub(super) async fn run(mut self) {
        let _alive = AliveGuard(self.stats.clone());
        let mut batch = Batch::new(self.batch_max_events);
        let mut draining = false;
        let mut state = Some((self.store, self.cache));
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                job = self.queue.recv() => Next::Job(job),
                _ = self.drain.wait_for(|drain| *drain), if !draining => Next::Drain,
                _ = probe.tick() => Next::Probe,
            };
            let first = match next {
                Next::Job(job) => job,
                Next::Drain => {
                    // Refuse new jobs but keep receiving the ones already queued.
                    self.queue.close();
                    draining = true;
                    continue;
                }
                Next::Probe if self.stats.store_ok() => {
                    // Healthy: only check that the database is still there (a stat call).
                    let (store, _) = state.as_ref().expect("state is put back after every use");
                    if let Err(e) = store.check_present() {
                        tracing::error!(partition = self.id, error = %e, "partition database lost; readiness is red");
                        self.stats.set_store_ok(false);
                    }
                    continue;
                }
                Next::Probe => {
                    let (mut store, cache) =
                        state.take().expect("state is put back after every use");
                    let (store, probed) = tokio::task::spawn_blocking(move || {
                        let probed = store.probe();
                        (store, probed)
                    })
                    .await
                    .expect("the probe does not panic");
                    match probed {
                        Ok(()) => {
                            tracing::info!(partition = self.id, "store writable again");
                            self.stats.set_store_ok(true);
                        }
                        Err(e) => {
                            tracing::warn!(partition = self.id, error = %e, "store still failing")
                        }
                    }
                    state = Some((store, cache));
                    continue;
                }
            };
            let Some(first) = first else { break };
            let jobs = gather(&mut self.queue, &mut batch, first, self.batch_linger).await;
            let (store, cache) = state.take().expect("state is put back after every batch");
            let metrics = self.metrics.clone();
            let panic_on_topic = self.panic_on_topic.clone();
            let committed = tokio::task::spawn_blocking(move || {
                let mut store = store;
                let mut cache = cache;
                if let Some(topic) = panic_on_topic
                    && jobs
                        .iter()
                        .flat_map(|j| &j.events)
                        .any(|e| e.topic == topic)
                {
                    panic!("injected fault: --debug-panic-on-topic {topic}");
                }
                let result = process_batch(store.as_mut(), &mut cache, &jobs, &metrics);
                (store, cache, jobs, result)
            })
            .await;
            match committed {
                Ok((store, cache, jobs, result)) => {
                    answer(self.id, &self.stats, store.totals(), jobs, result);
                    if !self.stats.store_ok() {
                        // Probe a full interval after the failure, not at once: an overdue tick
                        // would fire immediately and flip readiness back before anyone saw it.
                        probe.reset();
                    }
                    state = Some((store, cache));
                }
                Err(e) => {
                    // The store, the cache and the batch's jobs went down with the panic; those
                    // requests see a dropped reply and answer 503 (nothing of the batch was
                    // committed: its transaction died with its connection). Start afresh.
                    tracing::error!(partition = self.id, error = %e, "partition worker panicked; reopening its store");
                    match self.reopen.store.open_writer(self.id) {
                        Ok(store) => {
                            self.stats.publish_totals(store.totals());
                            state = Some((store, DedupCache::new(self.reopen.cache_keys)));
                        }
                        Err(e) => {
                            tracing::error!(partition = self.id, error = %e, "cannot reopen the store; partition stopped, readiness is red");
                            break;
                        }
                    }
                }
            }
        }
        tracing::debug!(partition = self.id, "partition worker stopped");
    }
}

/// Gathers jobs after `first` until the batch holds `batch_max_events` or, once the queue is
/// momentarily empty, `linger` has passed since the first job.
async fn gather(
    queue: &mut mpsc::Receiver<Job>,
    batch: &mut Batch<Job>,
    first: Job,
    linger: Duration,
) -> Vec<Job> {
    let deadline = Instant::now() + linger;
    let first_len = first.events.len();
    if let Some(full) = batch.push(first, first_len) {
        return full;
    }
    loop {
        let next = match queue.try_recv() {
            Ok(job) => Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) if linger.is_zero() => None,
            Err(mpsc::error::TryRecvError::Empty) => {
                timeout_at(deadline, queue.recv()).await.ok().flatten()
            }
        };
        let Some(job) = next else { return batch.take() };
        let len = job.events.len();
        if let Some(full) = batch.push(job, len) {
            return full;
        }
    }
}

/// Runs on the blocking pool: cache check, one transaction, cache update.
fn process_batch(
    store: &mut dyn PartitionWriter,
    cache: &mut DedupCache,
    jobs: &[Job],
    metrics: &PartitionMetrics,
) -> Result<Vec<JobOutcome>, StoreError> {
    let mut candidates = Vec::new();
    // Per event in batch order: Some(index into candidates) or None for a cache hit.
    let mut slots = Vec::new();
    for event in jobs.iter().flat_map(|job| &job.events) {
        if cache.contains(&event.topic, &event.event_id) {
            tracing::debug!(topic = %event.topic, event_id = %event.event_id, "duplicate dropped (cache)");
            slots.push(None);
        } else {
            slots.push(Some(candidates.len()));
            candidates.push(event);
        }
    }
    let cached_duplicates = (slots.len() - candidates.len()) as u64;
    let started = std::time::Instant::now();
    let inserted = store.commit_batch(&candidates, cached_duplicates);
    metrics
        .commit_duration
        .record(started.elapsed().as_secs_f64());
    let inserted = inserted?;
    metrics.batch_size.record(slots.len() as f64);
    // Committed: every candidate's key is now in the database, new or not.
    for event in &candidates {
        cache.insert(&event.topic, &event.event_id);
    }

    let mut slots = slots.into_iter();
    let outcomes = jobs
        .iter()
        .map(|job| {
            let mut outcome = JobOutcome::default();
            for (event, slot) in job.events.iter().zip(slots.by_ref()) {
                if slot.is_some_and(|i| inserted[i]) {
                    outcome.unique += 1;
                } else {
                    if slot.is_some() {
                        tracing::debug!(topic = %event.topic, event_id = %event.event_id, "duplicate dropped");
                    }
                    outcome.duplicate += 1;
                }
            }
            outcome
        })
        .collect();
    Ok(outcomes)
}

fn answer(
    partition: usize,
    stats: &PartitionStats,
    totals: Totals,
    jobs: Vec<Job>,
    result: Result<Vec<JobOutcome>, StoreError>,
) {
    match result {
        Ok(outcomes) => {
            stats.publish_totals(totals);
            stats.set_store_ok(true);
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                // The requester may have gone away; its events are committed regardless.
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::error!(partition, error = %e, "batch commit failed; nothing of it was stored");
            stats.set_store_ok(false);
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err(CommitFailed("the batch could not be committed".into())));
            }
        }
    }
}
