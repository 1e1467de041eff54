//! The shared engine: one PostgreSQL database behind any number of aggregator replicas.
//!
//! Every replica runs the same pipeline as with SQLite; only the writer and the reads differ.
//! What keeps replicas from stepping on each other is in the batch transaction
//! ([`writer`]): it locks the `topics` rows it will append to, in byte order, before reading
//! or writing any event of them. Two replicas writing the same topic therefore take turns,
//! and the later one sees the earlier one's events and `seq`.
//!
//! ```text
//! meta(key, value)                            'partitions' pinned at first start
//! schema_migrations(version, applied_at)      one row per applied migration
//! events(partition, topic, seq, event_id, timestamp, source, payload, pos)
//!     PRIMARY KEY (partition, topic, seq)     a topic's history in order; /events pages
//!     UNIQUE (topic, event_id)                the dedup key
//!     UNIQUE (partition, pos)                 the partition's commit order; streams
//! topics(topic, partition, last_seq, events)  locked per batch: seq order across replicas
//! positions(partition, last_pos)              locked from a batch's write to its COMMIT
//! counters(partition, slot, received, unique_processed, duplicate_dropped)
//! commit_marks(partition, pos, at)            retention: "up to pos committed by at"
//! kept_keys(partition, pos, topic, event_id)  keys of pruned events; UNIQUE (topic, event_id)
//! retention(partition, pruned_pos, forgotten_pos, pruned_events)
//!                                             locked by the replica pruning the partition
//! pruned_topics(topic, pruned)                /topics shows topics.events minus pruned
//! ```
//! `topic`, `event_id` and `source` are `bytea`: PostgreSQL text cannot hold the NUL
//! character JSON allows, and byte order matches SQLite's. Counters are split into slots per
//! partition (each writer adds to its own slot, chosen at random) so replicas committing to
//! the same partition do not queue on one counter row; the totals are the sums.
//!
//! Durability is the server's: COMMIT returns once PostgreSQL has flushed its WAL
//! (`synchronous_commit = on`, the default), so `--durability` does not apply here.

mod listen;
mod reader;
mod retention;
mod schema;
mod tls;
mod writer;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{
    OpenOptions, PageLimit, PartitionWriter, Store, StoreError, Stored, StoredEvent, TopicInfo,
    Totals,
};
use writer::PgWriter;

/// How long a commit or read waits for a pooled connection, and how long opening one may
/// take, before it fails (the publish then gets 503).
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed `postgres://` or `postgresql://` URL. `Display` and `Debug` never show the
/// password.
#[derive(Clone)]
pub struct PgLocation {
    config: Arc<tokio_postgres::Config>,
    tls: tls::TlsSettings,
    /// `user@host:port/dbname`, for logs and errors.
    label: String,
}

impl FromStr for PgLocation {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("expected a postgres:// or postgresql:// URL".into());
        }
        let (tls, url) = tls::TlsSettings::split_url(url)?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
        config.ssl_mode(tls.ssl_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_TIMEOUT);
        }
        config.application_name("uts-aggregator");
        // Statements are prepared once per connection (fast commits), but a generic plan for
        // them (PostgreSQL's choice after five runs) is 2× slower for small batches: measured
        // 6.7k vs 13.7k single-event publishes/s. Plan each run with its parameters
        // (PostgreSQL 12 or later).
        let options = match config.get_options() {
            Some(own) => format!("{own} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_string(),
        };
        config.options(&options);
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        let label = format!(
            "postgres://{}@{}:{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            if ports.is_empty() {
                "5432".into()
            } else {
                ports.join(",")
            },
            config.get_dbname().unwrap_or(""),
        );
        Ok(Self {
            config: Arc::new(config),
            tls,
            label,
        })
    }
}

impl fmt::Display for PgLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgLocation({})", self.label)
    }
}

/// What the store, its writers and its reads share.
#[derive(Debug)]
struct Shared {
    /// Writers' commits, retention steps and migrations.
    pool: Pool,
    /// Reads (pages, streams, long polls, topics, totals): a pool of its own, so however many
    /// readers wake, they never wait for or take a connection a writer commits through
    /// (Guarantee 7). Before, 300 idle subscribers of a quiet topic cut publishing 11-14x.
    read_pool: Pool,
    label: String,
}

impl Shared {
    fn error(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| StoreError::Postgres {
            location: self.label.clone(),
            what,
            reason: describe(&e),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.connect(&self.pool, "connect").await
    }

    /// A connection of the readers' pool.
    async fn read_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.connect(&self.read_pool, "connect (reads)").await
    }

    async fn connect(
        &self,
        pool: &Pool,
        what: &'static str,
    ) -> Result<deadpool_postgres::Object, StoreError> {
        pool.get().await.map_err(|e| StoreError::Postgres {
            location: self.label.clone(),
            what,
            reason: with_causes(&e),
        })
    }
}

/// The server's own message when there is one (`Display` of a server error is only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => with_causes(e),
    }
}

/// `e` and its sources: "error connecting to server" alone does not say why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Connections of the readers' pool: a quarter of the writers' (`--store-pool-size`), at
/// least 2. Reads are short single statements; a reader that waits over the pool timeout
/// for one gets an error (a page 503, a stream ends and resumes), never a writer's connection.
pub fn read_pool_size(pool_size: usize) -> usize {
    (pool_size / 4).max(2)
}

/// An opened, migrated PostgreSQL store.
#[derive(Debug)]
pub struct PgStore {
    shared: Arc<Shared>,
    partitions: usize,
    /// For the commit listener's own connection.
    location: PgLocation,
    retention: Option<crate::retention::Retention>,
}

impl PgStore {
    /// Connects, migrates (one replica at a time) and reads or pins the partition count.
    pub async fn open(location: &PgLocation, options: &OpenOptions) -> Result<Self, StoreError> {
        let pool = |size: usize| -> Result<Pool, StoreError> {
            let manager_config = ManagerConfig {
                // Discard connections PostgreSQL closed (a restart) when they come back.
                recycling_method: RecyclingMethod::Fast,
            };
            let pg_config = (*location.config).clone();
            let connector = location
                .tls
                .connector()
                .map_err(|reason| StoreError::Postgres {
                    location: location.label.clone(),
                    what: "TLS settings",
                    reason,
                })?;
            let manager = match connector {
                Some(tls) => Manager::from_config(pg_config, tls, manager_config),
                None => Manager::from_config(pg_config, NoTls, manager_config),
            };
            Pool::builder(manager)
                .max_size(size.max(1))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(POOL_TIMEOUT))
                .create_timeout(Some(POOL_TIMEOUT))
                .recycle_timeout(Some(POOL_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Postgres {
                    location: location.label.clone(),
                    what: "pool",
                    reason: e.to_string(),
                })
        };
        let shared = Arc::new(Shared {
            pool: pool(options.pool_size)?,
            read_pool: pool(read_pool_size(options.pool_size))?,
            label: location.label.clone(),
        });
        let partitions = {
            let mut client = shared.client().await?;
            let requested = options.partitions;
            schema::migrate(&mut client, requested, options.default_partitions.max(1))
                .await
                .map_err(|e| match e {
                    schema::MigrateError::Pg(e) => shared.error("migrate")(e),
                    schema::MigrateError::Newer { found, known } => StoreError::NewerSchema {
                        path: shared.label.clone(),
                        found,
                        known,
                    },
                    schema::MigrateError::Damaged(problem) => StoreError::Damaged {
                        location: shared.label.clone(),
                        problem,
                    },
                    schema::MigrateError::Mismatch { stored } => StoreError::PartitionMismatch {
                        location: shared.label.clone(),
                        stored,
                        requested: requested.unwrap_or(stored),
                    },
                })?
        };
        Ok(Self {
            shared,
            partitions,
            location: location.clone(),
            retention: options.retention,
        })
    }
}

#[async_trait]
impl Store for PgStore {
    fn partitions(&self) -> usize {
        self.partitions
    }

    async fn open_writer(&self, partition: usize) -> Result<Box<dyn PartitionWriter>, StoreError> {
        // The totals as the database holds them now: other replicas (and this process's
        // previous writer, when a worker is recovering) may have committed since the opening.
        let totals = reader::totals(&self.shared, self.partitions).await?;
        Ok(Box::new(PgWriter::new(
            self.shared.clone(),
            partition,
            totals[partition],
        )))
    }

    async fn topic_page(
        &self,
        partition: usize,
        topic: &str,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        reader::topic_page(&self.shared, partition, topic, after, limit).await
    }

    async fn last_seq(&self, _partition: usize, topic: &str) -> Result<i64, StoreError> {
        reader::last_seq(&self.shared, topic).await
    }

    async fn position_page(
        &self,
        partition: usize,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        reader::position_page(&self.shared, partition, after, limit).await
    }

    async fn last_positions(&self) -> Result<Vec<i64>, StoreError> {
        reader::last_positions(&self.shared, self.partitions).await
    }

    async fn page(
        &self,
        partition: usize,
        after: Option<(&str, i64)>,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        reader::page(&self.shared, partition, after, limit).await
    }

    async fn topics_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, StoreError> {
        reader::topics_page(&self.shared, after, limit).await
    }

    async fn topic_count(&self) -> Result<u64, StoreError> {
        reader::topic_count(&self.shared).await
    }

    fn listen_commits(
        &self,
        on_commit: crate::store::CommitListener,
    ) -> Option<crate::store::BackgroundTask> {
        Some(Box::pin(listen::commits(
            self.location.clone(),
            self.partitions,
            on_commit,
        )))
    }

    fn maintain(&self) -> Option<crate::store::BackgroundTask> {
        self.retention.map(|r| -> crate::store::BackgroundTask {
            Box::pin(retention::run(self.shared.clone(), self.partitions, r))
        })
    }

    async fn stored(&self) -> Result<Option<Stored>, StoreError> {
        if self.retention.is_none() {
            return Ok(None);
        }
        let (events, oldest_retained_ms) = retention::stored(&self.shared).await?;
        Ok(Some(Stored {
            events: count(events),
            oldest_retained_ms,
        }))
    }

    async fn shared_totals(&self) -> Result<Option<Vec<Totals>>, StoreError> {
        reader::totals(&self.shared, self.partitions)
            .await
            .map(Some)
    }
}

/// Partition ids and counter slots as PostgreSQL `integer`s (both are far below 2^31).
fn pg_int(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Counters are `bigint`s that only grow from 0.
fn count(value: i64) -> u64 {
    value.max(0) as u64
}

/// `bigint` parameter for a count.
fn pg_count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
