//! Storage: one SQLite database per partition, in WAL mode.
//!
//! The partition worker owns the only [`PartitionWriter`] of its database; HTTP reads go
//! through [`PartitionReader`]s on separate connections, which WAL lets run beside the writer
//! without blocking it. The primary key is the single source of truth for "already seen".

mod checkpoint;
mod layout;
mod reader;
mod schema;
mod writer;

pub use layout::{DataDir, LayoutError};
pub use reader::{PartitionReader, StoredEvent};
pub use writer::PartitionWriter;

use serde::Serialize;

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
/// fsyncs the WAL on every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=NORMAL`: survives a process crash.
    Process,
    /// `synchronous=FULL`: survives power loss.
    Power,
}

/// How a partition writer opens its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    pub durability: Durability,
    /// SQLite page cache of this writer, in KiB. The dedup index is the hot, randomly
    /// accessed structure; every page of it that misses this cache costs a read syscall.
    pub page_cache_kib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
}
