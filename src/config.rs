//! The settings of `serve`: every one a flag with an `AGG_*` fallback, named defaults, and
//! validation into what each layer takes. The command tree is in `cli.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

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

/// Serving HTTP: the socket, connections, timeouts, request and page limits, memory budgets, access.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address to listen on: `host:port` (an IP or a name such as `localhost`), or `:port`
    /// for every interface.
    #[arg(long, env = "AGG_LISTEN", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Connections the kernel queues before the service accepts them (listen backlog; the
    /// kernel caps it at net.core.somaxconn).
    #[arg(long, env = "AGG_LISTEN_BACKLOG", default_value_t = DEFAULT_LISTEN_BACKLOG)]
    pub listen_backlog: u32,

    /// Connections served at once. As many again are accepted and wait up to the header
    /// timeout for a slot, then get 503 + Retry-After; past that they wait in the listen backlog.
    #[arg(long, env = "AGG_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Streams, long polls and consumer waits held at once [default: half of
    /// --max-connections]. Past it a new one gets 503 + Retry-After at once, so readers can
    /// never take the connection slots publishes and health checks need.
    #[arg(long, env = "AGG_MAX_READERS")]
    pub max_readers: Option<usize>,

    /// Seconds between `: keep-alive` comments on a quiet GET /events/stream.
    #[arg(long, env = "AGG_STREAM_KEEP_ALIVE_SECS", default_value_t = DEFAULT_STREAM_KEEP_ALIVE_SECS)]
    pub stream_keep_alive_secs: u64,

    /// Seconds a client has to send a request's headers (a slowloris client is cut off).
    #[arg(long, env = "AGG_HEADER_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,

    /// Seconds a client has to send a whole request body (slower: 408).
    #[arg(long, env = "AGG_BODY_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_TIMEOUT_SECS)]
    pub body_timeout_secs: u64,

    /// Seconds a response may wait for the client to read it: a client that takes less than
    /// 16 KiB of a blocked response in that time is disconnected and its slot freed.
    #[arg(long, env = "AGG_WRITE_TIMEOUT_SECS", default_value_t = DEFAULT_WRITE_TIMEOUT_SECS)]
    pub write_timeout_secs: u64,

    /// Least average rate of a request body after a 5 s grace, in bytes/s (slower: 408).
    #[arg(long, env = "AGG_MIN_UPLOAD_BYTES_PER_SEC", default_value_t = DEFAULT_MIN_UPLOAD_BYTES_PER_SEC)]
    pub min_upload_bytes_per_sec: u64,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "AGG_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Most events in one publish request, max-batch (more: 413).
    #[arg(long, env = "AGG_MAX_EVENTS_PER_REQUEST", default_value_t = DEFAULT_MAX_EVENTS_PER_REQUEST)]
    pub max_events_per_request: usize,

    /// Byte bound of one GET /events page, in bytes of JSON (a page always holds at least one
    /// event; `Link: rel="next"` continues).
    #[arg(long, env = "AGG_MAX_PAGE_BYTES", default_value_t = DEFAULT_MAX_PAGE_BYTES)]
    pub max_page_bytes: usize,

    /// Memory for publishes in progress, in MiB: bodies as their bytes arrive, then their
    /// parsed events until committed (whether or not the client is still connected); past the
    /// budget publishes wait up to the enqueue timeout, then get 503. Bounds memory whatever
    /// the number of connections.
    #[arg(long, env = "AGG_MAX_INFLIGHT_BODY_MIB", default_value_t = DEFAULT_MAX_INFLIGHT_BODY_MIB)]
    pub max_inflight_body_mib: usize,

    /// Memory for GET /events pages being built or written, in MiB; past it, reads wait up to
    /// the enqueue timeout, then get 503.
    #[arg(long, env = "AGG_MAX_INFLIGHT_READ_MIB", default_value_t = DEFAULT_MAX_INFLIGHT_READ_MIB)]
    pub max_inflight_read_mib: usize,

    /// Memory all stream subscribers together may hold, in MiB: frames being read, built,
    /// queued or written. A subscriber waits for room (and is disconnected as slow after
    /// --write-timeout-secs), never allocates past it. Must hold two frames of the largest event.
    #[arg(long, env = "AGG_MAX_STREAM_MIB", default_value_t = DEFAULT_MAX_STREAM_MIB)]
    pub max_stream_mib: usize,

    /// A token with every scope: requests to POST /publish, GET /events, /topics and /stats
    /// must carry `Authorization: Bearer <token>`. Unset (and no --api-token-file) = no auth.
    #[arg(long, env = "AGG_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// A file of accepted tokens in addition to --api-token, one per line: `<token>` (every
    /// scope) or `<token> <scope>[,<scope>]` with scopes `publish` and `read`; blank lines and
    /// `#` comments are ignored. Rotate by adding the new token, moving clients, removing the old.
    #[arg(long, env = "AGG_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,

    /// One `info` line per request (target `access`: method, route, status, latency, request
    /// id); `--access-log false` turns it off.
    #[arg(long, env = "AGG_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
}

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

/// Where and how events are stored.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where events live: `sqlite` (files in --data-dir, one process) or a
    /// `postgres://user:password@host:port/dbname` URL (one database shared by any number of
    /// replicas; see README "Scaling out").
    #[arg(
        long = "store",
        env = "AGG_STORE",
        default_value = "sqlite",
        hide_env_values = true
    )]
    pub location: Location,

    /// Directory of the partition databases; created if missing. SQLite store only.
    #[arg(long, env = "AGG_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Number of partitions [default: number of CPUs]. Fixed at the first start of a data
    /// dir; a later start with a different value fails.
    #[arg(long, env = "AGG_PARTITIONS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: Option<u16>,

    /// `process`: an acknowledged event survives a crash of the service (kill -9).
    /// `power`: it also survives power loss (fsync on every commit; slower).
    #[arg(long, env = "AGG_DURABILITY", value_enum, default_value_t = Durability::Process)]
    pub durability: Durability,

    /// SQLite page cache of all partition writers together, in MiB (split evenly). Bigger
    /// keeps more of the dedup index in memory, which matters once the store is large.
    #[arg(long, env = "AGG_SQLITE_CACHE_MIB", default_value_t = DEFAULT_SQLITE_CACHE_MIB)]
    pub sqlite_cache_mib: u64,

    /// Most PostgreSQL connections this process opens (writers take one per commit, reads one
    /// per query); at least the partition count plus a few for reads. PostgreSQL store only.
    #[arg(long, env = "AGG_STORE_POOL_SIZE", default_value_t = DEFAULT_STORE_POOL_SIZE)]
    pub store_pool_size: usize,

    /// Below this much free space on the data dir's file system (MiB), publishes are refused
    /// (503) and `/readyz` is red, before SQLite runs into a full disk; both clear by
    /// themselves when space returns. SQLite store only; 0 turns the guard off.
    #[arg(long, env = "AGG_MIN_FREE_DISK_MIB", default_value_t = DEFAULT_MIN_FREE_DISK_MIB)]
    pub min_free_disk_mib: u64,

    /// Events committed longer ago are pruned in the background (event gone, key kept):
    /// `30s`, `12h`, `7d`, ... [default: keep forever]. Both stores; give every PostgreSQL
    /// replica the same setting.
    #[arg(long, env = "AGG_RETENTION", value_parser = crate::retention::parse_duration)]
    pub retention: Option<Duration>,

    /// A re-send of a pruned event stays a duplicate for this long after its commit; later it
    /// may be accepted again with a new seq [default: forever]. At least --retention.
    #[arg(long, env = "AGG_DEDUP_WINDOW", value_parser = crate::retention::parse_duration)]
    pub dedup_window: Option<Duration>,
}

/// `--listen`: `ip:port`, `name:port` (resolved now; the first address wins) or `:port`.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    const EXPECTED: &str = "expected host:port, e.g. 0.0.0.0:8080, localhost:8080 or :8080";
    let value = value.trim();
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("bad port {port:?}; {EXPECTED}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(address) = value.parse() {
        return Ok(address);
    }
    let Some((_, port)) = value.rsplit_once(':') else {
        return Err(format!("no port in {value:?}; {EXPECTED}"));
    };
    port.parse::<u16>()
        .map_err(|_| format!("bad port {port:?}; {EXPECTED}"))?;
    value
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {value:?}: {e}; {EXPECTED}"))?
        .next()
        .ok_or_else(|| format!("{value:?} resolves to no address; {EXPECTED}"))
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

impl HttpArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero(&[
            ("max-body-bytes", self.max_body_bytes),
            ("max-events-per-request", self.max_events_per_request),
            ("max-page-bytes", self.max_page_bytes),
            ("max-inflight-read-mib", self.max_inflight_read_mib),
        ])?;
        let one_read = crate::http::stream_read_reservation(self.max_body_bytes);
        if self.max_stream_mib.saturating_mul(1024 * 1024) < one_read {
            return Err(ConfigError::StreamBudgetTooSmall {
                budget_mib: self.max_stream_mib,
                needed_mib: one_read.div_ceil(1024 * 1024),
            });
        }
        let per_byte = 1 + crate::http::PARSE_BYTES_PER_BODY_BYTE;
        if self.max_inflight_body_mib.saturating_mul(1024 * 1024) < self.max_body_bytes * per_byte {
            return Err(ConfigError::BodyBudgetTooSmall {
                budget_mib: self.max_inflight_body_mib,
                body: self.max_body_bytes,
            });
        }
        Ok(())
    }

    /// Every accepted token: --api-token (every scope) plus the lines of --api-token-file.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        // An empty --api-token (e.g. `AGG_API_TOKEN=` from a compose file) means "unset".
        let mut tokens: Vec<ApiToken> = self
            .api_token
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .map(ApiToken::all_scopes)
            .collect();
        if let Some(path) = &self.api_token_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
                path: path.clone(),
                source,
            })?;
            let from_file = text
                .lines()
                .enumerate()
                .map(|(n, l)| (n + 1, l.trim()))
                .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                .map(|(line, l)| {
                    ApiToken::parse_line(l)
                        .map(|token| (line, token))
                        .map_err(|reason| ConfigError::BadTokenLine {
                            path: path.clone(),
                            line,
                            reason,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // A repeated token would let its last line silently decide its scopes.
            for (i, (line, token)) in from_file.iter().enumerate() {
                if let Some((first, _)) = from_file[..i]
                    .iter()
                    .find(|(_, t)| t.secret == token.secret)
                {
                    return Err(ConfigError::BadTokenLine {
                        path: path.clone(),
                        line: *line,
                        reason: format!(
                            "the same token as line {first}; give each token one line with all its scopes"
                        ),
                    });
                }
            }
            let from_file: Vec<ApiToken> = from_file.into_iter().map(|(_, t)| t).collect();
            if from_file.is_empty() {
                return Err(ConfigError::EmptyTokenFile(path.clone()));
            }
            tokens.extend(from_file);
        }
        Ok(tokens)
    }

    pub fn serve_limits(&self) -> crate::http::server::ServeLimits {
        crate::http::server::ServeLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(self.write_timeout_secs.max(1)),
        }
    }

    /// The HTTP layer's memory budgets.
    pub fn budgets(&self) -> Budgets {
        Budgets {
            inflight_body_bytes: self.max_inflight_body_mib.saturating_mul(1024 * 1024),
            inflight_read_bytes: self.max_inflight_read_mib.saturating_mul(1024 * 1024),
            stream_bytes: self.max_stream_mib.saturating_mul(1024 * 1024),
        }
    }
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
            when_full: WhenFull::Reject {
                after: Duration::from_millis(self.enqueue_timeout_ms),
            },
        }
    }
}

impl StoreArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero(&[("store-pool-size", self.store_pool_size)])?;
        self.retention().map(|_| ())
    }

    /// `--retention` with `--dedup-window`, when retention is on.
    pub fn retention(&self) -> Result<Option<Retention>, ConfigError> {
        match (self.retention, self.dedup_window) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ConfigError::Retention(
                "--dedup-window needs --retention (without it every event and key is kept forever)"
                    .into(),
            )),
            (Some(keep), window) => Retention::new(keep, window)
                .map(Some)
                .map_err(ConfigError::Retention),
        }
    }

    /// How to open the store `--store` names.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            location: self.location.clone(),
            data_dir: self.data_dir.clone(),
            partitions: self.partitions.map(usize::from),
            default_partitions: Self::default_partitions(),
            durability: self.durability,
            page_cache_kib_total: self.sqlite_cache_mib * 1024,
            pool_size: self.store_pool_size,
            // Checked by `validate` before the store is opened.
            retention: self.retention().ok().flatten(),
        }
    }

    /// The partition count for a new data dir when `--partitions` is unset.
    pub fn default_partitions() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_addresses_names_and_a_bare_port() {
        assert_eq!(
            parse_listen("127.0.0.1:9000"),
            Ok("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(parse_listen(":8080"), Ok("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(
            parse_listen("[::1]:8080"),
            Ok("[::1]:8080".parse().unwrap())
        );
        let local = parse_listen("localhost:8080").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        for bad in ["8080", "localhost", ":http", "host:99999"] {
            let error = parse_listen(bad).unwrap_err();
            assert!(error.contains("expected host:port"), "{bad}: {error}");
        }
    }
}
