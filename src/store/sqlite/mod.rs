//! The embedded engine: one SQLite database per partition, in WAL mode, in the data dir.
//!
//! The partition worker owns the only [`SqliteWriter`] of its database; HTTP reads go through
//! a [`PartitionReader`] per partition on separate connections, which WAL lets run beside the
//! writer without blocking it. The unique index is the single source of truth for "already
//! seen". The data dir is locked, so this process is the only writer and its workers' totals
//! are exact.

pub mod backup;
mod checkpoint;
mod layout;
mod reader;
mod schema;
mod writer;
mod writer_thread;

pub use layout::{DataDir, LayoutError, copy_manifest, partition_files, recorded_partitions};
use std::sync::Arc;

use async_trait::async_trait;
use reader::PartitionReader;
pub use writer::SqliteWriter;
use writer_thread::ThreadedWriter;

use super::{
    Durability, OpenOptions, PageLimit, PartitionWriter, Store, StoreError, Stored, StoredEvent,
    TopicInfo, Totals, merge_topic_pages,
};

/// How a partition writer opens its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    pub durability: Durability,
    /// SQLite page cache of this writer, in KiB. The dedup index is the hot, randomly
    /// accessed structure; every page of it that misses this cache costs a read syscall.
    pub page_cache_kib: u64,
    /// Pruning and forgetting, done by the writer between commits.
    pub retention: Option<crate::retention::Retention>,
}

/// The locked data dir with one writer and one reader per partition database.
#[derive(Debug)]
pub struct SqliteStore {
    data_dir: DataDir,
    options: WriterOptions,
    /// Shared with the blocking tasks that run the reads.
    readers: Vec<Arc<PartitionReader>>,
    /// Per partition, the reads that may run at once (see [`SqliteStore::read`]).
    read_slots: Vec<tokio::sync::Semaphore>,
}

impl SqliteStore {
    /// Opens the data dir and checks every partition database against its manifest (see
    /// [`layout`]): missing, emptied or replaced databases are refused, new ones are created
    /// and recorded.
    pub fn open(options: &OpenOptions) -> Result<Self, StoreError> {
        let mut data_dir = DataDir::open(
            &options.data_dir,
            options.partitions,
            options.default_partitions,
        )?;
        let writer_options = WriterOptions {
            durability: options.durability,
            page_cache_kib: options.page_cache_kib_total / data_dir.partitions() as u64,
            retention: options.retention,
        };
        let identities = (0..data_dir.partitions())
            .map(|p| {
                verify_database(&data_dir, p)?;
                let writer = SqliteWriter::open(&data_dir.partition_db(p), &writer_options)?;
                Ok(writer.identity().to_string())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        data_dir.record_identities(identities)?;
        let readers = (0..data_dir.partitions())
            .map(|p| Arc::new(PartitionReader::new(&data_dir.partition_db(p))))
            .collect();
        let read_slots = (0..data_dir.partitions())
            .map(|_| tokio::sync::Semaphore::new(reader::MAX_IDLE_CONNECTIONS))
            .collect();
        Ok(Self {
            options: writer_options,
            data_dir,
            readers,
            read_slots,
        })
    }

    /// Runs one read of `partition` on the blocking pool, at most as many at once as the
    /// partition keeps read connections: a thousand readers of one topic woken by one commit
    /// queue here, waiting without a thread or a connection each (Guarantee 7).
    async fn read<T: Send + 'static>(
        &self,
        partition: usize,
        read: impl FnOnce(&PartitionReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _slot = self.read_slots[partition]
            .acquire()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let reader = self.readers[partition].clone();
        blocking(move || read(&reader)).await
    }
}

/// Refuses a partition database the manifest expects but that is missing, empty or another
/// database; accepts a new one (first start) and an older one without identity (upgrade).
fn verify_database(data_dir: &DataDir, partition: usize) -> Result<(), LayoutError> {
    let path = data_dir.partition_db(partition);
    let expected = data_dir.expected_identity(partition);
    let must_exist = expected.is_some() || data_dir.is_legacy();
    if !path.exists() {
        if must_exist {
            return Err(LayoutError::MissingDatabase {
                path,
                manifest: data_dir.manifest_path(),
                identity: expected.map_or(String::new(), |id| format!(" with identity {id}")),
            });
        }
        return Ok(());
    }
    let replaced = |problem: String| LayoutError::ReplacedDatabase {
        path: path.clone(),
        manifest: data_dir.manifest_path(),
        expected: expected
            .unwrap_or("(a database of this data dir)")
            .to_string(),
        problem,
    };
    match (schema::existing_identity(&path), expected) {
        (Err(problem), _) if must_exist => Err(replaced(problem)),
        (Ok(Some(found)), Some(expected)) if found != expected => {
            Err(replaced(format!("holds identity {found}")))
        }
        (Ok(None), Some(_)) => Err(replaced("holds no identity (an older database)".into())),
        _ => Ok(()),
    }
}

/// Runs a blocking read on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[async_trait]
impl Store for SqliteStore {
    fn partitions(&self) -> usize {
        self.data_dir.partitions()
    }

    async fn open_writer(&self, partition: usize) -> Result<Box<dyn PartitionWriter>, StoreError> {
        // Also on a reopen after a worker panic: the file must still be the recorded one.
        verify_database(&self.data_dir, partition)?;
        let path = self.data_dir.partition_db(partition);
        let options = self.options;
        let writer = blocking(move || SqliteWriter::open(&path, &options)).await?;
        Ok(Box::new(ThreadedWriter::spawn(
            writer,
            partition,
            self.options.retention,
        )?))
    }

    async fn topic_page(
        &self,
        partition: usize,
        topic: &str,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let topic = topic.to_owned();
        self.read(partition, move |reader| {
            reader.topic_page(&topic, after, limit)
        })
        .await
    }

    async fn last_seq(&self, partition: usize, topic: &str) -> Result<i64, StoreError> {
        let topic = topic.to_owned();
        self.read(partition, move |reader| reader.last_seq(&topic))
            .await
    }

    async fn position_page(
        &self,
        partition: usize,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(partition, move |reader| reader.position_page(after, limit))
            .await
    }

    async fn stored(&self) -> Result<Option<Stored>, StoreError> {
        let readers = self.readers.clone();
        let per_partition = blocking(move || {
            readers
                .iter()
                .map(|r| r.stored())
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let mut stored = Stored::default();
        for (events, oldest) in per_partition {
            stored.events += events.max(0) as u64;
            if let Some(at) = oldest {
                stored.oldest_retained_ms =
                    Some(stored.oldest_retained_ms.map_or(at, |o: i64| o.min(at)));
            }
        }
        Ok(Some(stored))
    }

    async fn last_positions(&self) -> Result<Vec<i64>, StoreError> {
        let readers = self.readers.clone();
        blocking(move || readers.iter().map(|r| r.last_position()).collect()).await
    }

    async fn page(
        &self,
        partition: usize,
        after: Option<(&str, i64)>,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after = after.map(|(topic, seq)| (topic.to_owned(), seq));
        self.read(partition, move |reader| {
            reader.page(after.as_ref().map(|(t, s)| (t.as_str(), *s)), limit)
        })
        .await
    }

    async fn topics_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, StoreError> {
        let readers = self.readers.clone();
        let after = after.map(str::to_owned);
        blocking(move || {
            let pages = readers
                .iter()
                .map(|reader| reader.topics_page(after.as_deref(), limit))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(merge_topic_pages(pages, limit))
        })
        .await
    }

    async fn topic_count(&self) -> Result<u64, StoreError> {
        let readers = self.readers.clone();
        blocking(move || readers.iter().map(|r| r.topic_count()).sum()).await
    }

    async fn shared_totals(&self) -> Result<Option<Vec<Totals>>, StoreError> {
        Ok(None)
    }
}
