//! Accumulating a worker's next commit: whole jobs, bounded by an event count.

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

#[cfg(test)]
mod tests {
    use super::*;

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
