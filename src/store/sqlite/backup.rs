//! An online copy of one partition database while the service writes it: `VACUUM INTO` on a
//! connection of its own. It runs in one read transaction, so the copy is one consistent
//! snapshot holding every commit made before it began (and the counters, `seq`s and dedup keys
//! of exactly those); the writer goes on meanwhile (a WAL reader never blocks it). The copy is
//! compact (no free pages) and a plain database file; the service puts it in WAL mode when it
//! opens it.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// What a copy holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub bytes: u64,
    pub events: u64,
}

/// Copies the database at `from` to the new file `to`.
pub fn copy_database(from: &Path, to: &Path) -> Result<Copied, StoreError> {
    let sqlite = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Sqlite { path, source }
    };
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(from))?;
    source
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sqlite(from))?;
    let target = to.to_str().ok_or_else(|| StoreError::Io {
        path: to.display().to_string(),
        source: std::io::Error::other("the path is not UTF-8"),
    })?;
    source
        .execute("VACUUM INTO ?1", [target])
        .map_err(sqlite(from))?;
    drop(source);
    let copy =
        Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite(to))?;
    let events: i64 = copy
        .query_row("SELECT coalesce(sum(events), 0) FROM topics", [], |r| {
            r.get(0)
        })
        .map_err(sqlite(to))?;
    let bytes = std::fs::metadata(to)
        .map_err(|source| StoreError::Io {
            path: to.display().to_string(),
            source,
        })?
        .len();
    Ok(Copied {
        bytes,
        events: events.max(0) as u64,
    })
}
