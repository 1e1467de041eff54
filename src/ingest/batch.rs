//! Accumulating a worker's next commit: whole jobs, bounded by an event count, gathered for at
//! most the batch linger.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// Jobs gathered for one commit. A job (one request's events for this partition) is never
/// split, so a batch may exceed `max_events` by at most one job's events.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    jobs: Vec<T>,
    events: usize,
    max_events: usize,
}

impl<T> Batch<T> {
    pub(crate) fn new(max_events: usize) -> Self {
        Self {
            jobs: Vec::new(),
            events: 0,
            max_events: max_events.max(1),
        }
    }

    /// Adds a job of `events` events; returns the whole batch once it holds `max_events`.
    pub(crate) fn push(&mut self, job: T, events: usize) -> Option<Vec<T>> {
        self.jobs.push(job);
        self.events += events;
        (self.events >= self.max_events).then(|| self.take())
    }

    /// Takes whatever is gathered, leaving the batch empty.
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.events = 0;
        std::mem::take(&mut self.jobs)
    }
}

/// Gathers jobs after `first` until the batch holds its `max_events` (by `events_of` each job)
/// or, once the queue is momentarily empty, `linger` has passed since the first job. With no
/// linger, it takes what is queued and never waits.
pub(crate) async fn gather<T>(
    queue: &mut mpsc::Receiver<T>,
    batch: &mut Batch<T>,
    first: T,
    linger: Duration,
    events_of: impl Fn(&T) -> usize,
) -> Vec<T> {
    let deadline = Instant::now() + linger;
    let first_len = events_of(&first);
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
        let len = events_of(&job);
        if let Some(full) = batch.push(job, len) {
            return full;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(5);

    /// Sends `job` into `queue` after `delay` (on the paused clock).
    fn send_after(queue: &mpsc::Sender<usize>, delay: Duration, job: usize) {
        let queue = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = queue.send(job).await;
        });
    }

    #[tokio::test(start_paused = true)]
    async fn the_linger_counts_from_the_first_job_and_later_jobs_wait_for_the_next_batch() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut batch = Batch::new(100);
        send_after(&tx, Duration::from_millis(4), 2);
        send_after(&tx, Duration::from_millis(6), 3);
        let started = Instant::now();
        let jobs = gather(&mut rx, &mut batch, 1, LINGER, |_| 1).await;
        assert_eq!(
            jobs,
            [1, 2],
            "a job within the linger joins; one after it does not"
        );
        assert_eq!(started.elapsed(), LINGER, "it waited exactly the linger");
        let next = rx.recv().await.unwrap();
        let jobs = gather(&mut rx, &mut batch, next, LINGER, |_| 1).await;
        assert_eq!(jobs, [3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_or_no_linger_never_waits() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut batch = Batch::new(10);
        send_after(&tx, Duration::from_millis(1), 2);
        let started = Instant::now();
        // The first job fills the batch: back at once.
        assert_eq!(gather(&mut rx, &mut batch, 1, LINGER, |_| 10).await, [1]);
        // No linger: what is queued (nothing yet), at once.
        assert_eq!(
            gather(&mut rx, &mut batch, 1, Duration::ZERO, |_| 1).await,
            [1]
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Queued jobs are taken without waiting, up to the bound.
        tx.send(5).await.unwrap();
        tx.send(6).await.unwrap();
        assert_eq!(
            gather(&mut rx, &mut batch, 4, Duration::ZERO, |_| 1).await,
            [4, 5, 6]
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        // The job sent at 1 ms is the next batch's.
        assert_eq!(rx.recv().await, Some(2));
    }

    #[test]
    fn fills_by_event_count_and_never_splits_a_job() {
        let mut batch = Batch::new(10);
        assert_eq!(batch.push("a", 4), None);
        assert_eq!(batch.push("b", 4), None);
        assert_eq!(batch.push("c", 5), Some(vec!["a", "b", "c"]));
        assert_eq!(batch.push("d", 1), None);
        assert_eq!(batch.take(), vec!["d"]);
        assert!(batch.take().is_empty());
    }
}
