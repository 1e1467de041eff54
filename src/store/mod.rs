//! Storage behind the partition workers: one interface, two engines.
//!
//! - [`sqlite`] (the default): one WAL SQLite file per partition in the data dir, written by
//!   one process.
//! - [`postgres`]: one PostgreSQL database shared by any number of aggregator replicas.
//!
//! The pipeline above (router, queues, workers, batching, front cache, HTTP) is the same for
//! both: a worker owns one [`PartitionWriter`] and hands it whole batches; HTTP handlers read
//! through the [`Store`]. Both engines keep the same invariants in one transaction per batch:
//! an event's (`topic`, `event_id`) is stored at most once, its topic's `seq` grows by one per
//! new event in commit order, and the lifetime counters change with the events they count.

pub mod postgres;
pub mod sqlite;

pub use postgres::PgLocation;
pub use sqlite::{DataDir, LayoutError};

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::Event;

/// Lifetime counters, kept in the same transaction as the events they count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

/// One stored event as `/events` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub topic: String,
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    pub payload: Box<RawValue>,
    pub seq: i64,
}

/// An opened store. Every method blocks: call them from `spawn_blocking`.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The pinned partition count (fixed at first start, see [`DataDir`]).
    fn partitions(&self) -> usize;

    /// The writer of `partition`, for its worker. Called at start and again after a worker
    /// panic lost the previous one. Does no I/O for PostgreSQL (connections come per batch).
    fn open_writer(&self, partition: usize) -> Result<Box<dyn PartitionWriter>, StoreError>;

    /// Up to `limit` events of `topic` (owned by `partition`) with `seq > after`, ascending.
    fn topic_page(
        &self,
        partition: usize,
        topic: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` events of `partition` ordered by (`topic`, `seq`), after `after`.
    fn page(
        &self,
        partition: usize,
        after: Option<(&str, i64)>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every topic with at least one stored event, in byte order.
    fn topics(&self) -> Result<Vec<String>, StoreError>;

    /// Lifetime totals per partition as the store holds them now, when other processes may
    /// commit to it too. `None` when this process is the only writer, so the totals its own
    /// workers publish after each commit are already exact.
    fn shared_totals(&self) -> Result<Option<Vec<Totals>>, StoreError>;
}

/// The writing side of one partition, owned by its worker. Blocking.
pub trait PartitionWriter: Send {
    /// Lifetime totals of the partition as of this writer's last commit (or its opening).
    fn totals(&self) -> Totals;

    /// Stores `candidates` in order in one transaction, giving each new event the next `seq`
    /// of its topic, and adds to the lifetime counters: every candidate plus
    /// `cached_duplicates` (duplicates the front cache answered) as received. Returns, per
    /// candidate, whether it was new. On error nothing of the batch is stored — or, if the
    /// connection was lost during COMMIT itself, the outcome is unknown and a retry reports
    /// the events as duplicates; an `Ok` is only ever returned after a confirmed commit.
    fn commit_batch(
        &mut self,
        candidates: &[&Event],
        cached_duplicates: u64,
    ) -> Result<Vec<bool>, StoreError>;

    /// A small write in its own transaction: proves the store takes commits again after a
    /// failure.
    fn probe(&mut self) -> Result<(), StoreError>;
}

/// Opens (creating or migrating) the store `options` names.
pub async fn open(options: &OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    match &options.location {
        Location::Sqlite => Ok(Arc::new(sqlite::SqliteStore::open(options)?)),
        Location::Postgres(location) => {
            Ok(Arc::new(postgres::PgStore::open(location, options).await?))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
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
