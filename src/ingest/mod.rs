//! From validated events to committed events: the topic router, the partition handles with
//! their bounded queues, and the workers that commit batches.
//!
//! Backpressure ([`WhenFull::Reject`]): each partition queue holds at most `queue_capacity`
//! events, counted by a semaphore. A request takes permits for its events on every partition
//! it touches, in ascending partition order (so two requests can never wait on each other),
//! within `enqueue_timeout`; if it cannot, it gives all of them back and the caller answers 503.
//! Only with every permit held are the jobs sent, without any await in between, so a request
//! is enqueued all-or-nothing. A permit travels inside its job and is released once the job's
//! events are committed and answered.
//!
//! Queues are also bounded in bytes: every job carries its share of the request's
//! [`Charge`] on the in-flight memory budget, given back only when the job is dropped after
//! its commit was answered, so a client that disconnects cannot leave unaccounted events queued.

mod batch;
mod partitioner;
mod worker;

pub use partitioner::{partition_of, topic_hash};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::budget::Charge;
use crate::dedup::DedupCache;
use crate::event::Event;
use crate::metrics::{Metrics, PartitionMetrics};
use crate::stats::PartitionStats;
use crate::store::{Store, StoreError};
use worker::PartitionWorker;

/// What happens when a partition queue is full: the only policy is to wait up to the enqueue
/// timeout, then reject the whole request (503 + `Retry-After`). Nothing is ever dropped
/// after it was accepted, and memory never grows past the queue bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    Reject { after: Duration },
}

/// Tuning of the ingest pipeline.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub queue_capacity: usize,
    pub batch_max_events: usize,
    pub batch_linger: Duration,
    pub cache_keys_per_partition: usize,
    pub when_full: WhenFull,
    /// Testing aid: see `Config::debug_panic_on_topic`.
    pub panic_on_topic: Option<String>,
}

/// One request's events for one partition, with the channel to answer on.
#[derive(Debug)]
pub(crate) struct Job {
    events: Vec<Event>,
    /// Answered by the worker after the commit holding `events`; dropped unanswered only if
    /// the worker dies, which the waiting request reads as "unavailable".
    reply: oneshot::Sender<Result<JobOutcome, CommitFailed>>,
    /// Queue capacity held by `events`, returned when the job is dropped after its reply.
    _permit: OwnedSemaphorePermit,
    /// The events' bytes on the in-flight budget and in the partition's queued-bytes gauge,
    /// both given back when the job is dropped after its reply.
    _bytes: QueuedBytes,
}

/// A job's bytes: charged on the budget and counted in its partition's queued bytes.
#[derive(Debug)]
struct QueuedBytes {
    _charge: Charge,
    bytes: usize,
    gauge: Arc<AtomicUsize>,
}

impl QueuedBytes {
    fn new(charge: Charge, bytes: usize, gauge: Arc<AtomicUsize>) -> Self {
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JobOutcome {
    unique: usize,
    duplicate: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct CommitFailed(String);

/// The result of an accepted publish: every event committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishOutcome {
    pub received: usize,
    pub unique_processed: usize,
    pub duplicate_dropped: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    #[error("partition queues are full")]
    Overloaded,
    #[error("the service is shutting down")]
    ShuttingDown,
    /// A partition could not commit. `committed_elsewhere` is true when other partitions of
    /// the same request did commit (a retry reports those events as duplicates).
    #[error("storage unavailable: {reason}")]
    Unavailable {
        reason: String,
        committed_elsewhere: bool,
    },
}

/// The sending side of one partition. Cloned into nothing: lives in [`Ingest`] for the life of
/// the service; the queue closes when the worker is told to drain.
#[derive(Debug)]
pub struct PartitionHandle {
    /// To the worker. Capacity equals `queue_capacity`; since a job holds at least one
    /// permit, a send with permits in hand never finds the channel full.
    jobs: mpsc::Sender<Job>,
    /// Free queue capacity in events. Closed at shutdown so waiting requests fail fast.
    capacity: Arc<Semaphore>,
    queue_capacity: usize,
    /// Memory of the events queued or committing in this partition.
    queued_bytes: Arc<AtomicUsize>,
    pub stats: Arc<PartitionStats>,
    pub(crate) metrics: PartitionMetrics,
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
}

/// The ingest router: splits a request by partition and waits for its commits.
#[derive(Debug)]
pub struct Ingest {
    partitions: Vec<PartitionHandle>,
    when_full: WhenFull,
}

/// The running partition workers; see [`Workers::drain`].
#[derive(Debug)]
pub struct Workers {
    tasks: Vec<JoinHandle<()>>,
    /// Set to true to make every worker close its queue, commit what it holds and exit.
    drain: watch::Sender<bool>,
}

impl Ingest {
    /// Opens the writer of every partition of `store` and starts one worker per partition.
    pub fn start(
        store: &Arc<dyn Store>,
        settings: &IngestSettings,
        metrics: &Metrics,
    ) -> Result<(Self, Workers), StoreError> {
        let (drain, drain_rx) = watch::channel(false);
        let mut partitions = Vec::with_capacity(store.partitions());
        let mut tasks = Vec::with_capacity(store.partitions());
        for id in 0..store.partitions() {
            let writer = store.open_writer(id)?;
            let stats = Arc::new(PartitionStats::new(writer.totals()));
            let partition_metrics = metrics.partition(id);
            let (jobs, queue) = mpsc::channel(settings.queue_capacity.max(1));
            let worker = PartitionWorker {
                id,
                queue,
                drain: drain_rx.clone(),
                store: writer,
                cache: DedupCache::new(settings.cache_keys_per_partition),
                reopen: worker::Reopen {
                    store: store.clone(),
                    cache_keys: settings.cache_keys_per_partition,
                },
                panic_on_topic: settings.panic_on_topic.clone(),
                batch_max_events: settings.batch_max_events,
                batch_linger: settings.batch_linger,
                stats: stats.clone(),
                metrics: partition_metrics.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
            partitions.push(PartitionHandle {
                jobs,
                capacity: Arc::new(Semaphore::new(settings.queue_capacity)),
                queue_capacity: settings.queue_capacity,
                queued_bytes: Arc::new(AtomicUsize::new(0)),
                stats,
                metrics: partition_metrics,
            });
        }
        Ok((
            Self {
                partitions,
                when_full: settings.when_full,
            },
            Workers { tasks, drain },
        ))
    }

    pub fn partitions(&self) -> &[PartitionHandle] {
        &self.partitions
    }

    /// Refuses every further request; the ones already enqueued are still committed.
    pub fn close(&self) {
        for partition in &self.partitions {
            partition.capacity.close();
        }
    }

    /// Enqueues `events` all-or-nothing and waits until every one is committed. `charge`
    /// holds the events' memory on the in-flight budget; it is split among the jobs and given
    /// back as each is answered (see the module doc).
    pub async fn submit(
        &self,
        events: Vec<Event>,
        mut charge: Charge,
    ) -> Result<PublishOutcome, IngestError> {
        let received = events.len();
        let mut parts: Vec<Vec<Event>> = (0..self.partitions.len()).map(|_| Vec::new()).collect();
        let mut part_bytes = vec![0usize; self.partitions.len()];
        for event in events {
            let partition = partition_of(&event.topic, self.partitions.len());
            part_bytes[partition] += event.memory_bytes();
            parts[partition].push(event);
        }

        let WhenFull::Reject { after } = self.when_full;
        let permits = tokio::time::timeout(after, self.reserve(&parts))
            .await
            .map_err(|_| IngestError::Overloaded)??;

        // No await from here until every job is sent: the request is enqueued whole.
        let mut replies = Vec::with_capacity(permits.len());
        for (partition, permit) in permits {
            let (reply, answer) = oneshot::channel();
            let events = std::mem::take(&mut parts[partition]);
            let handle = &self.partitions[partition];
            let bytes = part_bytes[partition];
            let job = Job {
                events,
                reply,
                _permit: permit,
                _bytes: QueuedBytes::new(
                    charge.split_off(bytes),
                    bytes,
                    handle.queued_bytes.clone(),
                ),
            };
            match handle.jobs.try_send(job) {
                Ok(()) => replies.push(answer),
                Err(_) => {
                    return Err(IngestError::Unavailable {
                        reason: format!("partition {partition} is not running"),
                        committed_elsewhere: !replies.is_empty(),
                    });
                }
            }
        }

        let mut outcome = PublishOutcome {
            received,
            ..Default::default()
        };
        let mut failure = None;
        let mut committed_parts = 0;
        for answer in replies {
            match answer.await {
                Ok(Ok(job)) => {
                    outcome.unique_processed += job.unique;
                    outcome.duplicate_dropped += job.duplicate;
                    committed_parts += 1;
                }
                Ok(Err(CommitFailed(reason))) => failure = Some(reason),
                Err(_) => failure = Some("a partition worker stopped".into()),
            }
        }
        match failure {
            None => Ok(outcome),
            Some(reason) => Err(IngestError::Unavailable {
                reason,
                committed_elsewhere: committed_parts > 0,
            }),
        }
    }

    /// Takes queue capacity on every partition `parts` touches, in ascending order.
    async fn reserve(
        &self,
        parts: &[Vec<Event>],
    ) -> Result<Vec<(usize, OwnedSemaphorePermit)>, IngestError> {
        let mut permits = Vec::new();
        for (partition, events) in parts.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
            // Config validation keeps max events per request <= queue capacity <= u32::MAX,
            // so the request always fits once the queue drains.
            let wanted = u32::try_from(events.len()).unwrap_or(u32::MAX);
            let permit = self.partitions[partition]
                .capacity
                .clone()
                .acquire_many_owned(wanted)
                .await
                .map_err(|_| IngestError::ShuttingDown)?;
            permits.push((partition, permit));
        }
        Ok(permits)
    }
}

impl Workers {
    /// Tells every worker to stop taking new jobs, commit what is queued and exit, then waits
    /// up to `deadline` for all of them. Returns false if some worker did not finish in time.
    pub async fn drain(self, deadline: Duration) -> bool {
        // Receivers live as long as the workers; if all are gone there is nothing to signal.
        let _ = self.drain.send(true);
        let all = join_workers(self.tasks);
        tokio::time::timeout(deadline, all).await.is_ok()
    }
}

/// Awaits every worker task in turn, logging any that panicked.
async fn join_workers(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "partition worker ended abnormally");
        }
    }
}
