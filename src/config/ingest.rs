//! `serve`'s ingest settings: the partitions' queues, batching and front cache.

use std::time::Duration;

use super::*;

/// The partitions' queues, batching and front cache.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Events each partition queue holds before publishes wait (then get 503).
    #[arg(long, env = "AGG_QUEUE_CAPACITY", default_value_t = DEFAULT_QUEUE_CAPACITY)]
    pub queue_capacity: usize,

    /// Events per commit, at most (a request's events are never split, so one commit can
    /// exceed this by one request).
    #[arg(long, env = "AGG_BATCH_MAX_EVENTS", default_value_t = DEFAULT_BATCH_MAX_EVENTS)]
    pub batch_max_events: usize,

    /// How long a worker waits for more events before committing a partial batch, in ms.
    #[arg(long, env = "AGG_BATCH_LINGER_MS", default_value_t = DEFAULT_BATCH_LINGER_MS)]
    pub batch_linger_ms: u64,

    /// Recently committed keys remembered to answer duplicates without a database probe, in
    /// total: split evenly across the partitions (so memory does not grow with
    /// --partitions), allocated as keys arrive; 0 disables the cache.
    #[arg(long, env = "AGG_CACHE_KEYS", default_value_t = DEFAULT_CACHE_KEYS)]
    pub cache_keys: usize,

    /// How long a publish waits for queue space before 503, in ms.
    #[arg(long, env = "AGG_ENQUEUE_TIMEOUT_MS", default_value_t = DEFAULT_ENQUEUE_TIMEOUT_MS)]
    pub enqueue_timeout_ms: u64,
}

impl IngestArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero(&[
            ("queue-capacity", self.queue_capacity),
            ("batch-max-events", self.batch_max_events),
        ])?;
        // tokio's semaphore holds at most usize::MAX >> 3 permits; far above any sane value.
        let max = u32::MAX as usize;
        if self.queue_capacity > max {
            return Err(ConfigError::QueueTooLarge { max });
        }
        Ok(())
    }

    pub fn settings(&self) -> IngestSettings {
        IngestSettings {
            queue_capacity: self.queue_capacity,
            batch_max_events: self.batch_max_events,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            cache_keys_total: self.cache_keys,
            // Set from the store's settings by `Config::ingest_settings`.
            dedup_window: None,
            when_full: WhenFull::Reject {
                after: Duration::from_millis(self.enqueue_timeout_ms),
            },
        }
    }
}
