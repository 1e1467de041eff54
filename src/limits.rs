//! The machine's limits, checked at start instead of hit while serving (Guarantee 10).
//!
//! Every connection is a file descriptor, and so is each SQLite file a partition keeps open.
//! Under a common soft limit of 1024 open files, 1020 streams left publishes and `/readyz`
//! without a reply (`accept` failing with EMFILE), and `--partitions 512` refused to start
//! blaming a damaged database. So at start the soft `RLIMIT_NOFILE` is raised as far as the hard
//! limit allows, and the service refuses to start, naming the numbers, when what its settings
//! can hold open does not fit under it.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors the process holds apart from connections and partitions (runtime, epoll,
/// eventfds, the listener, the log, the data dir lock), with room to spare: 53 measured at
/// start with 8 partitions.
pub const BASE_FDS: u64 = 64;
/// Descriptors one SQLite partition may hold: the writer's database, WAL and shared-memory
/// files (3), the checkpointer's connection (2), up to 4 pooled readers (2 each), and room for
/// readers opened past the pool. Measured: 7 for a partition with 3 pooled readers.
pub const FDS_PER_SQLITE_PARTITION: u64 = 16;

/// What the settings can hold open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub max_connections: u64,
    /// Partition files kept open (0 on PostgreSQL, whose connections are a fixed pool).
    pub sqlite_partitions: u64,
    /// PostgreSQL connections (pool and listener), 0 on SQLite.
    pub store_connections: u64,
}

impl Need {
    /// Descriptors needed: every served connection and as many again waiting for a slot,
    /// the partitions' files, the store's connections and the base.
    pub fn fds(&self) -> u64 {
        BASE_FDS
            + 2 * self.max_connections
            + self.sqlite_partitions * FDS_PER_SQLITE_PARTITION
            + self.store_connections
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "the open-files limit is {limit} (hard limit {hard}), but --max-connections {} (served \
         and as many waiting: {}) with {} partition databases ({} files each) and the store's \
         {} connections need about {needed} descriptors. Raise the limit (ulimit -n {needed}, or \
         LimitNOFILE= in a systemd unit) or lower --max-connections to {fits}; refusing to start",
        need.max_connections, 2 * need.max_connections, need.sqlite_partitions,
        FDS_PER_SQLITE_PARTITION, need.store_connections
    )]
    TooFewFiles {
        limit: u64,
        hard: u64,
        needed: u64,
        fits: u64,
        need: Need,
    },
}

/// Raises the soft open-files limit to the hard one (best effort) and returns (soft, hard).
pub fn raise_open_files() -> (u64, u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (u64::MAX, u64::MAX);
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::debug!(from = soft, to = hard, "raised the open-files limit");
        return (hard, hard);
    }
    (soft, hard)
}

/// Whether `need` fits under the open-files limit `(soft, hard)`.
pub fn check(need: Need, (soft, hard): (u64, u64)) -> Result<(), LimitError> {
    let needed = need.fds();
    if needed <= soft {
        return Ok(());
    }
    let others = needed - 2 * need.max_connections;
    Err(LimitError::TooFewFiles {
        limit: soft,
        hard,
        needed,
        fits: soft.saturating_sub(others) / 2,
        need,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_a_raised_limit_and_a_tight_one_names_what_fits() {
        let need = Need {
            max_connections: 1024,
            sqlite_partitions: 2,
            store_connections: 0,
        };
        assert_eq!(need.fds(), 64 + 2048 + 32);
        assert!(check(need, (524_288, 524_288)).is_ok());
        let err = check(need, (1024, 1024)).unwrap_err();
        let LimitError::TooFewFiles { fits, needed, .. } = err.clone();
        assert_eq!(needed, 2144);
        assert_eq!(fits, (1024 - 96) / 2, "--max-connections that would fit");
        let message = err.to_string();
        assert!(message.contains("open-files limit is 1024"), "{message}");
        assert!(message.contains("--max-connections to 464"), "{message}");
    }

    #[test]
    fn many_partitions_are_counted() {
        let need = Need {
            max_connections: 100,
            sqlite_partitions: 512,
            store_connections: 0,
        };
        assert!(check(need, (1024, 1024)).is_err());
        assert!(check(need, (65_536, 65_536)).is_ok());
    }
}
