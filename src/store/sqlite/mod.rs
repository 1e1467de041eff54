//! The embedded engine: one SQLite database per partition, in WAL mode, in the data dir.
//!
//! The partition worker owns the only [`SqliteWriter`] of its database; HTTP reads go through
//! a [`PartitionReader`] per partition on separate connections, which WAL lets run beside the
//! writer without blocking it. The unique index is the single source of truth for "already
//! seen". The data dir is locked, so this process is the only writer and its workers' totals
//! are exact.

mod checkpoint;
mod layout;
mod reader;
mod schema;
mod writer;

pub use layout::{DataDir, LayoutError};
use reader::PartitionReader;
pub use writer::SqliteWriter;

use super::{Durability, OpenOptions, PartitionWriter, Store, StoreError, StoredEvent, Totals};

/// How a partition writer opens its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    pub durability: Durability,
    /// SQLite page cache of this writer, in KiB. The dedup index is the hot, randomly
    /// accessed structure; every page of it that misses this cache costs a read syscall.
    pub page_cache_kib: u64,
}

/// The locked data dir with one writer and one reader per partition database.
#[derive(Debug)]
pub struct SqliteStore {
    data_dir: DataDir,
    options: WriterOptions,
    readers: Vec<PartitionReader>,
}

impl SqliteStore {
    pub fn open(options: &OpenOptions) -> Result<Self, StoreError> {
        let data_dir = DataDir::open(
            &options.data_dir,
            options.partitions,
            options.default_partitions,
        )?;
        let readers = (0..data_dir.partitions())
            .map(|p| PartitionReader::new(&data_dir.partition_db(p)))
            .collect();
        Ok(Self {
            options: WriterOptions {
                durability: options.durability,
                page_cache_kib: options.page_cache_kib_total / data_dir.partitions() as u64,
            },
            data_dir,
            readers,
        })
    }
}

impl Store for SqliteStore {
    fn partitions(&self) -> usize {
        self.data_dir.partitions()
    }

    fn open_writer(&self, partition: usize) -> Result<Box<dyn PartitionWriter>, StoreError> {
        let writer = SqliteWriter::open(&self.data_dir.partition_db(partition), &self.options)?;
        Ok(Box::new(writer))
    }

    fn topic_page(
        &self,
        partition: usize,
        topic: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.readers[partition].topic_page(topic, after, limit)
    }

    fn page(
        &self,
        partition: usize,
        after: Option<(&str, i64)>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.readers[partition].page(after, limit)
    }

    fn topics(&self) -> Result<Vec<String>, StoreError> {
        let mut topics = Vec::new();
        for reader in &self.readers {
            topics.extend(reader.topics()?);
        }
        topics.sort_unstable();
        Ok(topics)
    }

    fn shared_totals(&self) -> Result<Option<Vec<Totals>>, StoreError> {
        Ok(None)
    }
}
