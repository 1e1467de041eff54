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

pub mod postgres;
pub mod sqlite;

pub use postgres::PgLocation;
pub use sqlite::{DataDir, LayoutError};

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::Event;

/// Lifetime counters, kept in the same transaction as the events they count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub received: u64,
    pub unique_processed: u64,
    pub duplicate_dropped: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Self) {
        self.received += other.received;
        self.unique_processed += other.unique_processed;
        self.duplicate_dropped += other.duplicate_dropped;
    }
}

/// How far a commit is durable. Both survive `kill -9` of the service (the WAL is written
/// before COMMIT returns); only `Power` also survives power loss or a kernel crash, because it
/// fsyncs the WAL on every commit. SQLite only: PostgreSQL's durability is the server's own
/// (`synchronous_commit`, `fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=NORMAL`: survives a process crash.
    Process,
    /// `synchronous=FULL`: survives power loss.
    Power,
}

impl Durability {
    /// The name `--durability` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Power => "power",
        }
    }
}

/// Where the events live (`--store`): `sqlite` or a `postgres://` URL.
#[derive(Debug, Clone)]
pub enum Location {
    /// SQLite files in the data dir.
    Sqlite,
    /// A PostgreSQL database, shared with other replicas.
    Postgres(PgLocation),
}

impl std::str::FromStr for Location {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "sqlite" {
            return Ok(Self::Sqlite);
        }
        value
            .parse()
            .map(Self::Postgres)
            .map_err(|e| format!("{e} (or `sqlite`)"))
    }
}

/// Everything needed to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub location: Location,
    /// The SQLite store's directory.
    pub data_dir: PathBuf,
    /// `--partitions`; `None` = keep the stored count, or `default_partitions` on first start.
    pub partitions: Option<usize>,
    pub default_partitions: usize,
    pub durability: Durability,
    /// SQLite page cache for all partition writers together, in KiB.
    pub page_cache_kib_total: u64,
    /// Most PostgreSQL connections this process opens.
    pub pool_size: usize,
    /// `--retention` / `--dedup-window`.
    pub retention: Option<crate::retention::Retention>,
}

/// One stored event as `/events` returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub topic: String,
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    /// The JSON object as it was published.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// 1, 2, 3, … per topic, without gaps, in commit order.
    #[schema(minimum = 1)]
    pub seq: i64,
    /// Its place in its partition's commit order (increasing, never reused, not gapless);
    /// what a stream of every topic resumes from. Not part of the event's JSON.
    #[serde(skip)]
    pub position: i64,
}

impl StoredEvent {
    /// About the bytes this event takes as `/events` JSON (the fields plus the keys and quoting
    /// around them); what a page's byte bound counts.
    pub fn json_bytes(&self) -> usize {
        const FRAMING: usize = 96;
        FRAMING
            + self.topic.len()
            + self.event_id.len()
            + self.timestamp.len()
            + self.source.len()
            + self.payload.get().len()
    }
}

/// How large a page of events may get: at most `max_events`, and it ends with the event that
/// reaches `max_bytes` of JSON (so it always holds at least one event, and a caller can tell
/// that the byte bound, not the end of the data, ended it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl PageLimit {
    /// Takes rows from `rows` until the page is full; stops reading there, so a page is never
    /// held in memory beyond its bound plus one event.
    pub fn collect<E>(
        self,
        rows: impl IntoIterator<Item = Result<StoredEvent, E>>,
    ) -> Result<Vec<StoredEvent>, E> {
        let mut page = Vec::new();
        let mut bytes = 0;
        for row in rows {
            if page.len() >= self.max_events || bytes >= self.max_bytes {
                break;
            }
            let event = row?;
            bytes += event.json_bytes();
            page.push(event);
        }
        Ok(page)
    }
}

/// One topic as `GET /topics` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TopicInfo {
    pub topic: String,
    /// Events of the topic stored now.
    pub events: u64,
    /// The highest `seq` ever given in the topic.
    pub last_seq: i64,
}

/// Merges per-partition topic pages (each sorted) into the first `limit` topics by byte order.
pub(crate) fn merge_topic_pages(pages: Vec<Vec<TopicInfo>>, limit: usize) -> Vec<TopicInfo> {
    let mut all: Vec<TopicInfo> = pages.into_iter().flatten().collect();
    all.sort_unstable_by(|a, b| a.topic.as_bytes().cmp(b.topic.as_bytes()));
    all.truncate(limit);
    all
}

/// One commit's events: the jobs' shared event slices, and for each event (in order) whether
/// it goes to the store (`false`: the front cache already knew it as a duplicate). Cheap to
/// clone, so it can travel to a writer thread.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    parts: Vec<Arc<[Event]>>,
    /// Per event of `parts`, flattened: a candidate for the store.
    candidate: Vec<bool>,
    cached_duplicates: u64,
}

impl CommitBatch {
    /// Adds one job's events; `is_candidate` says, per event, whether the store must see it.
    pub fn push(&mut self, events: Arc<[Event]>, is_candidate: impl IntoIterator<Item = bool>) {
        for candidate in is_candidate {
            self.candidate.push(candidate);
            self.cached_duplicates += u64::from(!candidate);
        }
        self.parts.push(events);
    }

    /// The events the store must see, in batch order.
    pub fn candidates(&self) -> Vec<&Event> {
        self.events()
            .filter_map(|(event, candidate)| candidate.then_some(event))
            .collect()
    }

    /// Duplicates the front cache answered, counted as received with the commit.
    pub fn cached_duplicates(&self) -> u64 {
        self.cached_duplicates
    }

    /// Every event of the batch with whether it is a candidate, in order.
    pub fn events(&self) -> impl Iterator<Item = (&Event, bool)> {
        self.parts
            .iter()
            .flat_map(|part| part.iter())
            .zip(self.candidate.iter().copied())
    }
}

/// What is stored now, as retention leaves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Events stored now (not pruned).
    pub events: u64,
    /// The commit time (Unix ms) at or before which the oldest retained event was committed,
    /// when retention keeps commit times.
    pub oldest_retained_ms: Option<i64>,
}

/// Told the partition of each commit another process made.
pub type CommitListener = Arc<dyn Fn(usize, Option<Vec<String>>) + Send + Sync>;

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

    /// Calls `on_commit(partition)` when another process commits new events to the store, for
    /// as long as the returned task runs (the caller aborts it when done). `None` when no other
    /// process can write (SQLite: this process's workers mark their own commits).
    fn listen_commits(&self, on_commit: CommitListener) -> Option<tokio::task::JoinHandle<()>> {
        let _ = on_commit;
        None
    }

    /// Starts the store's background maintenance (retention on PostgreSQL; SQLite's writer
    /// threads do their own), for as long as the returned task runs (the caller aborts it at
    /// shutdown). `None` when there is none.
    fn maintain(&self) -> Option<tokio::task::JoinHandle<()>> {
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
