//! The settings of `serve`: every one a flag with an `AGG_*` fallback, named defaults, and
//! validation into what each layer takes. The command tree is in `cli.rs`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

mod http;
mod ingest;
mod store;

pub use http::{HttpArgs, parse_listen};
pub use ingest::IngestArgs;
pub use store::StoreArgs;

use crate::http::{ApiToken, Budgets, HttpLimits, Secret};
use crate::ingest::{IngestSettings, WhenFull};
use crate::retention::Retention;
use crate::store::{Durability, Location, OpenOptions};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_QUEUE_CAPACITY: usize = 20_000;
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 2_000;
/// 0: group commit comes from queueing during the previous commit; a linger only adds waiting
/// (measured: 1 ms cut single-event throughput from 33k to 20k req/s).
pub const DEFAULT_BATCH_LINGER_MS: u64 = 0;
pub const DEFAULT_CACHE_KEYS: usize = 400_000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_MAX_EVENTS_PER_REQUEST: usize = 1_000;
pub const DEFAULT_ENQUEUE_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_SQLITE_CACHE_MIB: u64 = 64;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_MAX_INFLIGHT_BODY_MIB: usize = 64;
pub const DEFAULT_STORE_POOL_SIZE: usize = 16;
/// `--min-free-disk-mib`: room for a few seconds of full-speed ingest plus a WAL checkpoint.
pub const DEFAULT_MIN_FREE_DISK_MIB: u64 = 256;
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
pub const DEFAULT_MIN_UPLOAD_BYTES_PER_SEC: u64 = 1024;
pub const DEFAULT_MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_MAX_INFLIGHT_READ_MIB: usize = 64;
/// Memory every stream subscriber together may hold, in MiB (`--max-stream-mib`).
pub const DEFAULT_MAX_STREAM_MIB: usize = 64;
pub const DEFAULT_STREAM_KEEP_ALIVE_SECS: u64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the service, in groups that validate themselves. `Parser` as well as `Args`, so
/// tests can build one from defaults.
#[derive(Debug, Clone, Parser)]
#[command(name = "uts-aggregator")]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub ingest: IngestArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Log line format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "AGG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// On SIGTERM/SIGINT, how long to wait for in-flight requests and queued commits, in s.
    #[arg(long, env = "AGG_SHUTDOWN_TIMEOUT_SECS", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_SECS)]
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Retention(String),
    #[error(
        "--max-stream-mib {budget_mib} cannot hold one stream read of the largest event \
         (--max-body-bytes): at least {needed_mib} MiB"
    )]
    StreamBudgetTooSmall {
        budget_mib: usize,
        needed_mib: usize,
    },
    #[error("cannot read --api-token-file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--api-token-file {0} holds no token; refusing to start without the auth it asks for")]
    EmptyTokenFile(PathBuf),
    #[error("--api-token-file {path} line {line}: {reason}")]
    BadTokenLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    #[error(
        "--queue-capacity ({queue}) must be at least --max-events-per-request ({request}), \
         or a full-size request could never be enqueued"
    )]
    QueueSmallerThanRequest { queue: usize, request: usize },
    #[error("--queue-capacity must be at most {max}")]
    QueueTooLarge { max: usize },
    #[error(
        "--max-inflight-body-mib ({budget_mib} MiB) must hold at least one --max-body-bytes \
         body ({body} bytes) while it is parsed (3× the body)"
    )]
    BodyBudgetTooSmall { budget_mib: usize, body: usize },
}

impl Config {
    /// Settings as if given no flags (environment still applies): the test default.
    pub fn from_defaults() -> Self {
        Self::parse_from(["uts-aggregator"])
    }

    /// Each group's own checks, then those that span groups.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.ingest.validate()?;
        self.store.validate()?;
        if self.ingest.queue_capacity < self.http.max_events_per_request {
            return Err(ConfigError::QueueSmallerThanRequest {
                queue: self.ingest.queue_capacity,
                request: self.http.max_events_per_request,
            });
        }
        Ok(())
    }

    /// The ingest settings, with the store's dedup window the front caches honour.
    pub fn ingest_settings(&self) -> crate::ingest::IngestSettings {
        let mut settings = self.ingest.settings();
        settings.dedup_window = self
            .store
            .retention()
            .ok()
            .flatten()
            .and_then(|r| r.forget_after);
        settings
    }

    pub fn http_limits(&self) -> HttpLimits {
        let http = &self.http;
        HttpLimits {
            max_body_bytes: http.max_body_bytes,
            max_events_per_request: http.max_events_per_request,
            retry_after_secs: self.ingest.enqueue_timeout_ms.div_ceil(1000).max(1),
            body_timeout: Duration::from_secs(http.body_timeout_secs),
            enqueue_timeout: Duration::from_millis(self.ingest.enqueue_timeout_ms),
            min_upload_bytes_per_sec: http.min_upload_bytes_per_sec,
            max_page_bytes: http.max_page_bytes,
            access_log: http.access_log,
            stream_write_timeout: Duration::from_secs(http.write_timeout_secs.max(1)),
            stream_keep_alive: Duration::from_secs(http.stream_keep_alive_secs.max(1)),
            max_readers: self.max_readers(),
        }
    }

    /// What these settings can hold open at once, for the open-files check at start.
    pub fn file_needs(&self) -> crate::limits::Need {
        let (sqlite_partitions, store_connections) = match self.store.location {
            crate::store::Location::Sqlite => {
                let partitions = self
                    .store
                    .partitions
                    .map(usize::from)
                    .or_else(|| crate::store::sqlite::recorded_partitions(&self.store.data_dir))
                    .unwrap_or_else(StoreArgs::default_partitions);
                (partitions, 0)
            }
            // The writers' and readers' pools and the commit listener's connection.
            crate::store::Location::Postgres(_) => {
                let pool = self.store.store_pool_size;
                (0, pool + crate::store::postgres::read_pool_size(pool) + 1)
            }
        };
        crate::limits::Need {
            max_connections: self.http.max_connections as u64,
            sqlite_partitions: sqlite_partitions as u64,
            store_connections: store_connections as u64,
        }
    }

    /// `--max-readers`, or half the connection cap (at least 1).
    pub fn max_readers(&self) -> usize {
        self.http
            .max_readers
            .unwrap_or(self.http.max_connections / 2)
            .max(1)
    }
}

fn nonzero(values: &[(&'static str, usize)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((name, _)) => Err(ConfigError::Zero(name)),
        None => Ok(()),
    }
}
