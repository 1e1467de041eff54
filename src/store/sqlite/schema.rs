//! Schema and migrations of a partition database, versioned with `PRAGMA user_version`.
//!
//! `events` is clustered on (`topic`, `seq`), so a topic's history is one contiguous range
//! read in order; the unique index on (`topic`, `event_id`) is the dedup key. `topics` holds
//! each topic's last `seq` and how many of its events are stored (version 2); `counters` the
//! lifetime totals; `meta` (version 3) the database's identity, which the data dir's manifest
//! records so that a replaced file is recognised. All three change in the same
//! transaction, so they can never disagree.
//!
//! Version 4 gives every event a position (`pos`): 1, 2, 3, … in the partition's commit order,
//! unique, never reused (`counters.last_pos` remembers the highest given, even when events are
//! gone). A stream of every topic resumes from one position per partition. Events stored before
//! version 4 are numbered in (`topic`, `seq`) order when the database is upgraded.

use rusqlite::Connection;

use super::WriterOptions;
use crate::store::Durability;

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE events (
        topic     TEXT    NOT NULL,
        seq       INTEGER NOT NULL,
        event_id  TEXT    NOT NULL,
        timestamp TEXT    NOT NULL,
        source    TEXT    NOT NULL,
        payload   TEXT    NOT NULL,
        PRIMARY KEY (topic, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX events_identity ON events (topic, event_id);
    CREATE TABLE topics (
        topic    TEXT    NOT NULL PRIMARY KEY,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE counters (
        id                INTEGER PRIMARY KEY CHECK (id = 0),
        received          INTEGER NOT NULL,
        unique_processed  INTEGER NOT NULL,
        duplicate_dropped INTEGER NOT NULL
    );
    INSERT INTO counters VALUES (0, 0, 0, 0);
",
    "
    ALTER TABLE topics ADD COLUMN events INTEGER NOT NULL DEFAULT 0;
    UPDATE topics SET events = (SELECT count(*) FROM events WHERE events.topic = topics.topic);
",
    "
    CREATE TABLE meta (
        key   TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
",
    "
    ALTER TABLE events ADD COLUMN pos INTEGER;
    UPDATE events SET pos = numbered.n
    FROM (SELECT topic AS t, seq AS s, row_number() OVER (ORDER BY topic, seq) AS n
          FROM events) AS numbered
    WHERE events.topic = numbered.t AND events.seq = numbered.s;
    CREATE UNIQUE INDEX events_position ON events (pos);
    ALTER TABLE counters ADD COLUMN last_pos INTEGER NOT NULL DEFAULT 0;
    UPDATE counters SET last_pos = (SELECT coalesce(max(pos), 0) FROM events);
",
    // Retention (see `crate::retention`): commit-time marks; the keys of pruned events (their
    // rows leave `events`, so their pages are freed; the keys stay duplicates until forgotten);
    // how far the partition is pruned and forgotten.
    "
    CREATE TABLE commit_marks (
        pos INTEGER PRIMARY KEY,
        at  INTEGER NOT NULL
    );
    CREATE TABLE kept_keys (
        pos      INTEGER PRIMARY KEY,
        topic    TEXT NOT NULL,
        event_id TEXT NOT NULL
    );
    CREATE UNIQUE INDEX kept_keys_identity ON kept_keys (topic, event_id);
    ALTER TABLE counters ADD COLUMN pruned_pos INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN forgotten_pos INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters ADD COLUMN pruned_events INTEGER NOT NULL DEFAULT 0;
",
];

pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Settings of the writing connection. Automatic checkpoints are off: see `checkpoint`.
pub(super) fn configure(conn: &mut Connection, options: &WriterOptions) -> rusqlite::Result<()> {
    let synchronous = match options.durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    conn.busy_handler(Some(retry_briefly))?;
    // Before the first table exists (a new file), so that pruned space can be given back to the
    // file system; on an existing file it changes nothing (freed pages are reused instead).
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA cache_size = -{cache}; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA temp_store = MEMORY; PRAGMA journal_size_limit = {wal_limit};",
        cache = options.page_cache_kib.max(64),
        wal_limit = super::checkpoint::RESTART_AT_WAL_BYTES,
    ))
}

/// Busy handler of the writer: the only other holder of the write lock is the checkpointer's
/// short RESTART, so retry every 200 µs (up to 5 s in all) instead of SQLite's default
/// schedule, which sleeps up to 50 ms per attempt and showed up as p95/p99 latency.
fn retry_briefly(attempt: i32) -> bool {
    const PAUSE: std::time::Duration = std::time::Duration::from_micros(200);
    const ATTEMPTS: i32 = 25_000;
    if attempt >= ATTEMPTS {
        return false;
    }
    std::thread::sleep(PAUSE);
    true
}

/// Brings the database to [`VERSION`]. Returns the version found, so a newer file is refused.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(found)
}

/// The database's identity, given once (a random 128-bit hex string) and never changed.
pub(super) fn identity(conn: &Connection) -> rusqlite::Result<String> {
    let fresh = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('identity', ?1) ON CONFLICT (key) DO NOTHING",
        [fresh],
    )?;
    conn.query_row("SELECT value FROM meta WHERE key = 'identity'", [], |r| {
        r.get(0)
    })
}

/// What an existing file holds, read without changing it: its identity (`None` for a
/// database of schema version 1 or 2, which had none), or an error when it is not a partition
/// database at all (empty, or another file).
pub(super) fn existing_identity(path: &std::path::Path) -> Result<Option<String>, String> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| cannot_open(&e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| match out_of_descriptors() {
            true => cannot_open(&e),
            false => format!("is not a database ({e})"),
        })?;
    if version < 1 {
        return Err("is empty (no aggregator schema)".into());
    }
    if version < 3 {
        return Ok(None);
    }
    conn.query_row("SELECT value FROM meta WHERE key = 'identity'", [], |r| {
        r.get(0)
    })
    .map(Some)
    .map_err(|e| format!("has no identity ({e})"))
}

/// Why a file could not be opened, naming EMFILE when that is the cause.
fn cannot_open(e: &rusqlite::Error) -> String {
    match out_of_descriptors() {
        true => format!(
            "cannot be opened ({e}): {}",
            crate::store::TOO_MANY_OPEN_FILES
        ),
        false => format!("cannot be opened ({e})"),
    }
}

/// Whether the process has no file descriptor left (EMFILE). SQLite reports EMFILE only as
/// "unable to open database file", which reads like a damaged or missing file.
pub(super) fn out_of_descriptors() -> bool {
    std::fs::File::open("/dev/null")
        .is_err_and(|e| e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run in a child process (it lowers its own open-files limit and uses every descriptor).
    const CHILD: &str = "AGG_EMFILE_CHILD";

    #[test]
    fn a_partition_that_cannot_be_opened_for_lack_of_descriptors_is_named_emfile() {
        let Some(path) = std::env::var_os(CHILD) else {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("partition-000.db");
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn).unwrap();
            identity(&conn).unwrap();
            drop(conn);
            assert!(matches!(existing_identity(&path), Ok(Some(_))));
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "--nocapture"])
                .arg(
                    "store::sqlite::schema::tests::\
                     a_partition_that_cannot_be_opened_for_lack_of_descriptors_is_named_emfile",
                )
                .env(CHILD, &path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{text}");
            assert!(text.contains("1 passed"), "{text}");
            return;
        };
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 64, hard).unwrap();
        let mut held = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            held.push(file);
        }
        let problem = existing_identity(std::path::Path::new(&path)).unwrap_err();
        assert!(problem.contains("EMFILE"), "{problem}");
        assert!(!problem.contains("not a database"), "{problem}");
        drop(held);
    }
}
