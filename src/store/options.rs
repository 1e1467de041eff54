//! What opening a store takes: where (`--store`), how durable, and the engines' settings.

use std::path::PathBuf;

use super::PgLocation;

/// How far a commit is durable. Both survive `kill -9` of the service (the WAL is written
/// before COMMIT returns); only `Power` also survives power loss or a kernel crash, because it
/// fsyncs the WAL on every commit. SQLite only: PostgreSQL's durability is the server's own
/// (`synchronous_commit`, `fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL`: survives a process crash.
    Process,
    /// `synchronous=FULL`: survives power loss.
    Power,
}

impl Durability {
    /// Every value, by the name `--durability` takes.
    pub const NAMES: [&'static str; 2] = ["process", "power"];

    /// The name `--durability` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Power => "power",
        }
    }

    /// The value named `name` (one of [`Durability::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Process, Self::Power]
            .into_iter()
            .find(|d| d.as_str() == name)
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
