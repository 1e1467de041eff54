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
mod partition;
mod partitioner;
mod wakers;
mod worker;

pub use partition::{CommitMark, PartitionHandle};
pub use partitioner::{partition_of, topic_hash};
pub use wakers::TopicWait;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tokio::task::JoinHandle;

use crate::budget::Charge;
use crate::event::Event;
use crate::stats::{ServiceStats, Snapshot};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use partition::{CommitFailed, Job, QueuedBytes};
use worker::{PartitionWorker, WorkerSettings};

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
    /// The front caches' keys in total, split evenly across the partitions.
    pub cache_keys_total: usize,
    /// The store's dedup window (`--dedup-window`), which the front caches honour.
    pub dedup_window: Option<Duration>,
    pub when_full: WhenFull,
}

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
    pub async fn start(
        store: &Arc<dyn Store>,
        settings: &IngestSettings,
        metrics: &Metrics,
    ) -> Result<(Self, Workers), StoreError> {
        let (drain, drain_rx) = watch::channel(false);
        let worker_settings = WorkerSettings {
            queue_capacity: settings.queue_capacity,
            batch_max_events: settings.batch_max_events,
            batch_linger: settings.batch_linger,
            cache_keys: settings
                .cache_keys_total
                .div_ceil(store.partitions().max(1)),
            dedup_window: settings.dedup_window,
            store: store.clone(),
            drain: drain_rx,
        };
        let mut partitions = Vec::with_capacity(store.partitions());
        let mut tasks = Vec::with_capacity(store.partitions());
        for id in 0..store.partitions() {
            let writer = store.open_writer(id).await?;
            let (handle, task) =
                PartitionWorker::spawn(id, writer, worker_settings.clone(), metrics.partition(id));
            partitions.push(handle);
            tasks.push(task);
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

    /// Every partition's numbers and state now, with the service-wide ones.
    pub fn snapshot(&self, service: &ServiceStats, shutting_down: bool) -> Snapshot {
        let partitions = self
            .partitions
            .iter()
            .map(PartitionHandle::snapshot)
            .collect();
        Snapshot::new(partitions, service, shutting_down)
    }

    /// Takes in lifetime totals read from a store other processes commit to as well
    /// (PostgreSQL replicas), per partition in id order. Totals never move backwards.
    pub fn publish_shared_totals(&self, shared: &[crate::store::Totals]) {
        for (partition, totals) in self.partitions.iter().zip(shared) {
            partition.publish_totals(*totals);
        }
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
            let events: Arc<[Event]> = std::mem::take(&mut parts[partition]).into();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::MemoryBudget;

    const ENQUEUE_TIMEOUT: Duration = Duration::from_millis(500);
    const QUEUE: usize = 10;

    fn events(topics: &[&str]) -> Vec<Event> {
        let body: Vec<serde_json::Value> = topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                serde_json::json!({"topic": topic, "event_id": format!("e-{i}"),
                    "timestamp": "2025-10-24T00:00:00Z", "source": "t", "payload": {}})
            })
            .collect();
        crate::event::parse_publish_body(&serde_json::to_vec(&body).unwrap(), 100).unwrap()
    }

    /// Two topics on different partitions of a two-partition store.
    fn two_topics() -> (&'static str, &'static str) {
        let topics = ["a", "b", "c", "d", "e", "f"];
        let first = topics[0];
        let other = topics
            .into_iter()
            .find(|t| partition_of(t, 2) != partition_of(first, 2))
            .expect("some topic lands on the other partition");
        (first, other)
    }

    /// The enqueue timeout on the paused clock: a request that finds no queue room within it
    /// is refused whole at exactly the timeout (the room it took elsewhere given back); one
    /// whose room frees in time is accepted.
    #[tokio::test(start_paused = true)]
    async fn a_request_without_queue_room_is_refused_whole_at_the_enqueue_timeout() {
        let kit = crate::testkit::start(2, |c| {
            c.ingest.queue_capacity = QUEUE;
            c.ingest.enqueue_timeout_ms = ENQUEUE_TIMEOUT.as_millis() as u64;
        })
        .await;
        let ingest = &kit.ingest;
        let (full, free) = two_topics();
        let (full_partition, free_partition) = (partition_of(full, 2), partition_of(free, 2));
        let held = ingest.partitions[full_partition]
            .capacity
            .clone()
            .acquire_many_owned(QUEUE as u32)
            .await
            .unwrap();
        let budget = MemoryBudget::new(1 << 20);
        let started = tokio::time::Instant::now();
        let refused = ingest.submit(events(&[free, full]), budget.empty()).await;
        assert_eq!(refused, Err(IngestError::Overloaded));
        assert_eq!(started.elapsed(), ENQUEUE_TIMEOUT);
        assert_eq!(
            ingest.partitions[free_partition]
                .capacity
                .available_permits(),
            QUEUE,
            "the room taken on the other partition is given back"
        );
        // Room that frees within the timeout lets the request in.
        tokio::spawn(async move {
            tokio::time::sleep(ENQUEUE_TIMEOUT / 2).await;
            drop(held);
        });
        let accepted = ingest.submit(events(&[free, full]), budget.empty()).await;
        assert_eq!(accepted.map(|o| o.unique_processed), Ok(2));
    }
}
