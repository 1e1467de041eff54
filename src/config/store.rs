//! `serve`'s store settings: where and how events are stored, retention.

use std::time::Duration;

use super::*;

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
    #[arg(long, env = "AGG_DURABILITY", default_value = "process", value_parser = durability_parser())]
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

/// `--durability`: one of the store's names for it (clap lists them in `--help`).
fn durability_parser() -> impl clap::builder::TypedValueParser<Value = Durability> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Durability::NAMES).map(|name| {
        Durability::from_name(&name).expect("the parser only lets the possible values through")
    })
}
