//! The data directory: which files live there, the pinned partition count, and the lock that
//! keeps a second process from writing the same files.
//!
//! ```text
//! data/
//!   LOCK                 held (flock) by the running process for its whole life
//!   aggregator.json      the manifest: {"format": 2, "partitions": N, "databases": [
//!                          {"file": "partition-000.db", "identity": "<random id>"}, ...]}
//!   partition-000.db     one SQLite database (+ -wal, -shm) per partition
//! ```
//! The partition count decides which partition owns a topic's history, so it is fixed at first
//! start; a later start asking for a different count fails instead of re-hashing history.
//!
//! The manifest names every partition database with the identity recorded inside it, so a
//! database that went missing, was emptied, or was replaced by another one is refused at start
//! (never silently recreated empty, which would forget every key it held). A data dir of
//! format 1 (no identities yet) is upgraded in place: its databases must all be there.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const META_FILE: &str = "aggregator.json";
const LOCK_FILE: &str = "LOCK";
const FORMAT: u32 = 2;
/// Data dirs written before the manifest recorded identities.
const LEGACY_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot use data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {0} is in use by another uts-aggregator process")]
    Locked(PathBuf),
    #[error(
        "data dir {path} was created with {stored} partitions, but {requested} were requested; \
         the partition count is fixed at first start (start with --partitions {stored} or a new data dir)"
    )]
    PartitionMismatch {
        path: PathBuf,
        stored: usize,
        requested: usize,
    },
    #[error("{path} is not a valid uts-aggregator metadata file: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error(
        "partition database {path} is missing, but {manifest} records it{identity}: its events and \
         dedup keys would be lost and their ids accepted again. Restore it (with its -wal file) \
         from a backup; refusing to start"
    )]
    MissingDatabase {
        path: PathBuf,
        manifest: PathBuf,
        identity: String,
    },
    #[error(
        "partition database {path} {problem}; {manifest} records identity {expected}. \
         Restore the right file from a backup; refusing to start"
    )]
    ReplacedDatabase {
        path: PathBuf,
        manifest: PathBuf,
        expected: String,
        problem: String,
    },
    #[error(
        "data dir {path} holds partition files ({found}) but no manifest ({META_FILE}): it is not \
         a complete data dir (a backup killed part-way leaves such a folder), and starting on it \
         would accept again the ids its missing data held. Use a complete backup; refusing to start"
    )]
    NoManifest { path: PathBuf, found: String },
}

/// One partition database as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct DatabaseEntry {
    pub file: String,
    pub identity: String,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    partitions: usize,
    #[serde(default)]
    databases: Vec<DatabaseEntry>,
}

/// An opened, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    partitions: usize,
    /// The manifest's databases (empty before they are first recorded).
    databases: Vec<DatabaseEntry>,
    /// Format 1: the databases exist but their identities were never recorded.
    legacy: bool,
    /// Holds the exclusive lock on `LOCK` until the `DataDir` is dropped.
    _lock: File,
}

impl DataDir {
    /// Opens (creating on first start) the data dir. `requested` is the `--partitions` setting;
    /// `first_start_default` is used when it is unset and the dir is new.
    pub fn open(
        root: &Path,
        requested: Option<usize>,
        first_start_default: usize,
    ) -> Result<Self, LayoutError> {
        let io = |source| LayoutError::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::create_dir_all(root).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LayoutError::Locked(root.into())),
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let meta_path = root.join(META_FILE);
        let mut databases = Vec::new();
        let mut legacy = false;
        let partitions = match fs::read(&meta_path) {
            Ok(bytes) => {
                let meta: Meta =
                    serde_json::from_slice(&bytes).map_err(|e| LayoutError::BadMeta {
                        path: meta_path.clone(),
                        reason: e.to_string(),
                    })?;
                if !(meta.format == FORMAT || meta.format == LEGACY_FORMAT) || meta.partitions == 0
                {
                    return Err(LayoutError::BadMeta {
                        path: meta_path,
                        reason: format!(
                            "format {} with {} partitions",
                            meta.format, meta.partitions
                        ),
                    });
                }
                if let Some(requested) = requested.filter(|&r| r != meta.partitions) {
                    return Err(LayoutError::PartitionMismatch {
                        path: root.into(),
                        stored: meta.partitions,
                        requested,
                    });
                }
                legacy = meta.format == LEGACY_FORMAT;
                databases = meta.databases;
                meta.partitions
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let found = partition_like_files(root).map_err(io)?;
                if !found.is_empty() {
                    return Err(LayoutError::NoManifest {
                        path: root.into(),
                        found: found.join(", "),
                    });
                }
                let partitions = requested.unwrap_or(first_start_default).max(1);
                write_atomically(
                    &meta_path,
                    &Meta {
                        format: FORMAT,
                        partitions,
                        databases: Vec::new(),
                    },
                )
                .map_err(io)?;
                partitions
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            root: root.into(),
            partitions,
            databases,
            legacy,
            _lock: lock,
        })
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(META_FILE)
    }

    /// The identity the manifest records for `partition`'s database, if any.
    pub fn expected_identity(&self, partition: usize) -> Option<&str> {
        let file = Self::file_name(partition);
        self.databases
            .iter()
            .find(|d| d.file == file)
            .map(|d| d.identity.as_str())
    }

    /// True when the databases were created by an earlier version that did not record their
    /// identities: they must all exist.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// Records every partition database's identity in the manifest (atomically).
    pub fn record_identities(&mut self, identities: Vec<String>) -> Result<(), LayoutError> {
        let databases: Vec<DatabaseEntry> = identities
            .into_iter()
            .enumerate()
            .map(|(p, identity)| DatabaseEntry {
                file: Self::file_name(p),
                identity,
            })
            .collect();
        if databases == self.databases && !self.legacy {
            return Ok(());
        }
        let meta = Meta {
            format: FORMAT,
            partitions: self.partitions,
            databases: databases.clone(),
        };
        write_atomically(&self.manifest_path(), &meta).map_err(|source| LayoutError::Io {
            path: self.root.clone(),
            source,
        })?;
        self.databases = databases;
        self.legacy = false;
        Ok(())
    }

    fn file_name(partition: usize) -> String {
        format!("partition-{partition:03}.db")
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub fn partition_db(&self, partition: usize) -> PathBuf {
        self.root.join(Self::file_name(partition))
    }
}

/// The partition count a data dir's manifest records, if it has a readable one.
pub fn recorded_partitions(root: &Path) -> Option<usize> {
    let bytes = fs::read(root.join(META_FILE)).ok()?;
    let meta: Meta = serde_json::from_slice(&bytes).ok()?;
    Some(meta.partitions)
}

/// Files of `root` that only a data dir with a manifest should hold (databases, their journals),
/// sorted, at most a few named.
fn partition_like_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut found: Vec<String> = fs::read_dir(root)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("partition-"))
        .collect();
    found.sort();
    if found.len() > 4 {
        let more = found.len() - 3;
        found.truncate(3);
        found.push(format!("and {more} more"));
    }
    Ok(found)
}

/// What a data dir holds, read without taking its lock (a running service keeps it): the
/// manifest's path and the partition databases' paths. For `backup`.
pub fn partition_files(root: &Path) -> Result<(PathBuf, Vec<PathBuf>), LayoutError> {
    let manifest = root.join(META_FILE);
    let bytes = fs::read(&manifest).map_err(|source| LayoutError::Io {
        path: manifest.clone(),
        source,
    })?;
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| LayoutError::BadMeta {
        path: manifest.clone(),
        reason: e.to_string(),
    })?;
    if meta.format != FORMAT || meta.partitions == 0 {
        return Err(LayoutError::BadMeta {
            path: manifest,
            reason: format!(
                "format {} with {} partitions (start the service on it once to upgrade it)",
                meta.format, meta.partitions
            ),
        });
    }
    let files = (0..meta.partitions)
        .map(|p| root.join(DataDir::file_name(p)))
        .collect();
    Ok((manifest, files))
}

/// Copies the manifest to `dir` (atomically), the last step of a backup.
pub fn copy_manifest(manifest: &Path, dir: &Path) -> std::io::Result<()> {
    let target = dir.join(META_FILE);
    let tmp = target.with_extension("json.tmp");
    fs::copy(manifest, &tmp)?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, &target)
}

fn write_atomically(path: &Path, meta: &Meta) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(meta).expect("Meta always serialises"))?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_count_is_pinned_at_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path(), None, 3).unwrap();
        assert_eq!(first.partitions(), 3);
        drop(first);
        assert_eq!(DataDir::open(dir.path(), None, 8).unwrap().partitions(), 3);
        let err = DataDir::open(dir.path(), Some(4), 8).unwrap_err();
        assert!(
            err.to_string()
                .contains("created with 3 partitions, but 4 were requested")
        );
    }

    #[test]
    fn partition_files_without_a_manifest_are_refused_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("partition-000.db"), b"").unwrap();
        fs::write(dir.path().join("partition-000.db-journal"), b"").unwrap();
        let err = DataDir::open(dir.path(), None, 2).unwrap_err();
        assert!(matches!(err, LayoutError::NoManifest { .. }), "{err}");
        assert!(err.to_string().contains("partition-000.db"), "{err}");
        assert!(!dir.path().join(META_FILE).exists(), "no manifest written");
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DataDir::open(dir.path(), Some(1), 1).unwrap();
        assert!(matches!(
            DataDir::open(dir.path(), Some(1), 1),
            Err(LayoutError::Locked(_))
        ));
    }
}
