//! The data dir's disk: how much the databases and their WALs take, how much the file system
//! has left, and the low-space guard (`--min-free-disk-mib`). Below the minimum, publishes are
//! refused (503 with the reason) and `/readyz` is red *before* SQLite runs into a full disk;
//! both clear by themselves once space returns. Sampled every second by a background task; a
//! publish only reads the last sample.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the disk is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Bytes of disk an accepted event's bytes may take before the next sample sees them (the
/// row in the database and its frame in the WAL): a fast writer cannot overshoot the
/// minimum between two samples (one filled a 16 MiB margin in 1.8 s before).
pub const DISK_BYTES_PER_EVENT_BYTE: u64 = 2;

/// `Retry-After` of a publish refused for lack of space: space rarely returns within a second.
pub const RETRY_AFTER_SECS: u64 = 5;

/// One sample of the data dir's disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskNumbers {
    /// Bytes the file system still has for the service (`f_bavail`).
    pub free_bytes: u64,
    /// Bytes of the partition databases (`*.db`).
    pub database_bytes: u64,
    /// Bytes of their write-ahead logs (`*.db-wal`).
    pub wal_bytes: u64,
}

/// The guard of one data dir.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    min_free_bytes: u64,
    last: Mutex<Option<DiskNumbers>>,
    /// Event bytes accepted since the last sample, reset by each sample.
    accepted_since_sample: AtomicU64,
}

impl DiskGuard {
    pub fn new(dir: &Path, min_free_mib: u64) -> Self {
        let guard = Self {
            dir: dir.to_path_buf(),
            min_free_bytes: min_free_mib.saturating_mul(1024 * 1024),
            last: Mutex::new(None),
            accepted_since_sample: AtomicU64::new(0),
        };
        guard.sample();
        guard
    }

    /// Takes a new sample (a `statvfs` and one directory listing); keeps the last good one if
    /// the file system cannot be read (logged).
    pub fn sample(&self) {
        match measure(&self.dir) {
            Ok(numbers) => {
                let was_low = self.refusal().is_some();
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(numbers);
                self.accepted_since_sample.store(0, Ordering::Relaxed);
                let low = self.refusal();
                match (was_low, low) {
                    (false, Some(reason)) => tracing::error!(reason, "publishes refused"),
                    (true, None) => tracing::info!(
                        free_mib = numbers.free_bytes / (1024 * 1024),
                        "disk space is back above --min-free-disk-mib; publishes accepted again"
                    ),
                    _ => {}
                }
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot measure the data dir's disk")
            }
        }
    }

    /// The last sample.
    pub fn numbers(&self) -> Option<DiskNumbers> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `bytes` of events accepted since the last sample against the free space.
    pub fn note_accepted(&self, bytes: usize) {
        self.accepted_since_sample
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Free bytes now, as far as known: the last sample less what was accepted since.
    fn free_now(&self, numbers: DiskNumbers) -> u64 {
        let accepted = self.accepted_since_sample.load(Ordering::Relaxed);
        numbers
            .free_bytes
            .saturating_sub(accepted.saturating_mul(DISK_BYTES_PER_EVENT_BYTE))
    }

    /// Why publishes are refused now, or `None`.
    pub fn refusal(&self) -> Option<String> {
        let numbers = self.numbers()?;
        let free = self.free_now(numbers);
        (free < self.min_free_bytes).then(|| {
            format!(
                "low disk space: {} MiB free on the data dir's file system ({}), below \
                 --min-free-disk-mib {}; publishes are refused until space returns",
                free / (1024 * 1024),
                self.dir.display(),
                self.min_free_bytes / (1024 * 1024)
            )
        })
    }

    /// Samples every [`SAMPLE_EVERY`] for as long as the caller runs it (until shutdown).
    pub async fn watch(self: std::sync::Arc<Self>) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let guard = self.clone();
            if tokio::task::spawn_blocking(move || guard.sample())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn measure(dir: &Path) -> std::io::Result<DiskNumbers> {
    let fs = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let mut numbers = DiskNumbers {
        free_bytes: fs.blocks_available().saturating_mul(fs.fragment_size()),
        ..DiskNumbers::default()
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // A file removed between the listing and its stat counts as 0.
        let len = entry.metadata().map_or(0, |m| m.len());
        if name.ends_with(".db") {
            numbers.database_bytes += len;
        } else if name.ends_with(".db-wal") {
            numbers.wal_bytes += len;
        }
    }
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_counts_databases_and_wals_and_refuses_below_the_minimum() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("partition-000.db"), vec![0u8; 4096]).unwrap();
        std::fs::write(dir.path().join("partition-000.db-wal"), vec![0u8; 100]).unwrap();
        std::fs::write(dir.path().join("aggregator.json"), b"{}").unwrap();
        let guard = DiskGuard::new(dir.path(), 0);
        let numbers = guard.numbers().unwrap();
        assert_eq!((numbers.database_bytes, numbers.wal_bytes), (4096, 100));
        assert!(numbers.free_bytes > 0);
        assert_eq!(guard.refusal(), None);
        // A minimum above any disk's free space refuses, naming the flag.
        let guard = DiskGuard::new(dir.path(), u64::MAX / (1024 * 1024));
        assert!(guard.refusal().unwrap().contains("--min-free-disk-mib"));
    }
}
