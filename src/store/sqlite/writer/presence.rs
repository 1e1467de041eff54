//! Whether a partition database's path still names the file its writer opened.

use std::path::Path;

use crate::store::StoreError;

/// A database file as its writer opened it: the path, and the device and inode it named.
#[derive(Debug, Clone)]
pub(in crate::store::sqlite) struct FilePresence {
    path: std::path::PathBuf,
    id: (u64, u64),
}

impl FilePresence {
    pub(in crate::store::sqlite) fn new(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.into(),
            id: file_id(path)?,
        })
    }

    /// Ok while the path names the same file (one `stat`).
    pub(in crate::store::sqlite) fn check(&self) -> Result<(), StoreError> {
        let lost = |reason: String| StoreError::PartitionLost {
            path: self.path.display().to_string(),
            reason,
        };
        match file_id(&self.path) {
            Ok(id) if id == self.id => Ok(()),
            Ok(_) => Err(lost("was replaced by another file".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(lost("was deleted".into())),
            Err(e) => Err(lost(format!("cannot be checked: {e}"))),
        }
    }
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}
