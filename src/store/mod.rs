//! Storage behind the partition workers: one interface, two engines.
//!
//! - [`sqlite`] (the default): one WAL SQLite file per partition in the data dir, written by
//!   one process.
//! - [`postgres`]: one PostgreSQL database shared by any number of aggregator replicas.
//!
//! The pipeline above (router, queues, workers, batching, front cache, HTTP) is the same for
//! both: a worker owns one [`PartitionWriter`] and hands it whole batches; HTTP handlers read
//! through the [`Store`].
//!
//! **Every method that does I/O is async, and the engine keeps its own blocking work off the
//! runtime's threads**, so no caller has a rule to remember: SQLite reads hop to the blocking
//! pool inside the engine, and each SQLite partition writer lives on a dedicated thread fed
//! by a channel; PostgreSQL is async throughout. Both engines keep the same invariants in one transaction per batch:
//! an event's (`topic`, `event_id`) is stored at most once, its topic's `seq` grows by one per
//! new event in commit order, and the lifetime counters change with the events they count.

mod options;
pub mod postgres;
pub mod sqlite;
mod values;

pub use options::{Durability, Location, OpenOptions};
pub use postgres::PgLocation;
pub use sqlite::{DataDir, LayoutError};
pub(crate) use values::merge_topic_pages;
pub use values::{CommitBatch, PageLimit, Stored, StoredEvent, TopicInfo, Totals};

use std::sync::Arc;

use async_trait::async_trait;

/// Told the partition of each commit another process made.
pub type CommitListener = Arc<dyn Fn(usize, Option<Vec<String>>) + Send + Sync>;

/// A background task of the store, not yet running: the service spawns it and drops it at
/// shutdown (at an await point, like any cancelled future).
pub type BackgroundTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// An opened store.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The pinned partition count (fixed at first start, see [`DataDir`]).
    fn partitions(&self) -> usize;

    /// The writer of `partition`, for its worker. Called at start and again after a worker
    /// panic lost the previous one.
    async fn open_writer(&self, partition: usize) -> Result<Box<dyn PartitionWriter>, StoreError>;

    /// Events of `topic` (owned by `partition`) with `seq > after`, ascending, as many as
    /// `limit` allows.
    async fn topic_page(
        &self,
        partition: usize,
        topic: &str,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The highest `seq` ever given in `topic` (owned by `partition`), 0 for a topic never
    /// stored: a cursor beyond it is from the future (Guarantee 9).
    async fn last_seq(&self, partition: usize, topic: &str) -> Result<i64, StoreError>;

    /// Events of `partition` with `position > after`, in commit order, as many as `limit`
    /// allows.
    async fn position_page(
        &self,
        partition: usize,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Per partition, the highest position given so far (0 before the first event).
    async fn last_positions(&self) -> Result<Vec<i64>, StoreError>;

    /// Events of `partition` ordered by (`topic`, `seq`), after `after`, as many as `limit`
    /// allows.
    async fn page(
        &self,
        partition: usize,
        after: Option<(&str, i64)>,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` topics after `after`, in byte order, with their counts (kept with the
    /// events, never counted by a scan).
    async fn topics_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, StoreError>;

    /// How many topics exist.
    async fn topic_count(&self) -> Result<u64, StoreError>;

    /// A task that calls `on_commit(partition)` when another process commits new events to the
    /// store, for as long as the caller runs it (it never ends by itself; the service drops it
    /// at shutdown). `None` when no other process can write (SQLite: this process's workers
    /// mark their own commits).
    fn listen_commits(&self, on_commit: CommitListener) -> Option<BackgroundTask> {
        let _ = on_commit;
        None
    }

    /// The store's background maintenance (retention on PostgreSQL; SQLite's writer threads
    /// do their own), as a task the caller runs until shutdown. `None` when there is none.
    fn maintain(&self) -> Option<BackgroundTask> {
        None
    }

    /// What is stored now (for the metrics), when retention can have removed events; `None`
    /// when every event ever stored is still there.
    async fn stored(&self) -> Result<Option<Stored>, StoreError> {
        Ok(None)
    }

    /// Lifetime totals per partition as the store holds them now, when other processes may
    /// commit to it too. `None` when this process is the only writer, so the totals its own
    /// workers publish after each commit are already exact.
    async fn shared_totals(&self) -> Result<Option<Vec<Totals>>, StoreError>;
}

/// The writing side of one partition, owned by its worker.
#[async_trait]
pub trait PartitionWriter: Send {
    /// Lifetime totals of the partition as of this writer's last commit (or its opening).
    fn totals(&self) -> Totals;

    /// Stores the batch's candidates in order in one transaction, giving each new event the
    /// next `seq` of its topic, and adds to the lifetime counters: every candidate plus the
    /// duplicates the front cache answered, as received. Returns, per candidate, whether it
    /// was new. On error nothing of the batch is stored — or, if the connection was lost
    /// during COMMIT itself, the outcome is unknown and a retry reports the events as
    /// duplicates; an `Ok` is only ever returned after a confirmed commit.
    async fn commit_batch(&mut self, batch: &CommitBatch) -> Result<Vec<bool>, StoreError>;

    /// A small write in its own transaction: proves the store takes commits again after a
    /// failure.
    async fn probe(&mut self) -> Result<(), StoreError>;

    /// Cheap check that the storage this writer commits to is still the one it opened (the
    /// SQLite file was not deleted or replaced). Checked before and after every commit, and
    /// every second while idle, so readiness turns red without a publish.
    fn check_present(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Opens (creating or migrating) the store `options` names.
pub async fn open(options: &OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    match &options.location {
        Location::Sqlite => {
            let options = options.clone();
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&options))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            Ok(Arc::new(store))
        }
        Location::Postgres(location) => {
            Ok(Arc::new(postgres::PgStore::open(location, options).await?))
        }
    }
}

/// What to say when a file cannot be opened because the process has no descriptor left.
pub(crate) const TOO_MANY_OPEN_FILES: &str = "too many open files (EMFILE): the process \
     reached its open-files limit (`ulimit -n`); raise it or lower --partitions / \
     --max-connections";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// SQLite could not open a file because the process has no file descriptor left.
    #[error("{path} cannot be opened: {}", TOO_MANY_OPEN_FILES)]
    TooManyOpenFiles { path: String },
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "{path} was written by a newer uts-aggregator (schema version {found}, this build knows {known})"
    )]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("cannot start the checkpointer of {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("stored payload in {path} is not JSON: {source}")]
    CorruptPayload {
        path: String,
        source: serde_json::Error,
    },
    #[error("the writer of {0} stopped (a panic on its thread); it is reopened")]
    WriterGone(String),
    #[error("a store task failed: {0}")]
    Task(String),
    #[error(
        "partition database {path} {reason}; commits refused until it is restored and the service restarted"
    )]
    PartitionLost { path: String, reason: String },
    #[error(
        "PostgreSQL store {location} is damaged: {problem}; restore it from a backup (refusing to start)"
    )]
    Damaged { location: String, problem: String },
    #[error("postgres error ({what}) on {location}: {reason}")]
    Postgres {
        location: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "PostgreSQL store {location} was created with {stored} partitions, but {requested} were requested; \
         the partition count is fixed at first start (start with --partitions {stored} or a new database)"
    )]
    PartitionMismatch {
        location: String,
        stored: usize,
        requested: usize,
    },
}
