//! The writer side of a partition database: one batch, one transaction. Its retention steps
//! are in [`retention`]; the check that its file is still the one it opened, in [`presence`].

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::checkpoint::{Checkpointer, MAX_WAL_BYTES};
use super::{WriterOptions, schema};
use crate::event::Event;
use crate::retention::MIN_STEP_EVENTS;
use crate::store::{StoreError, Totals};
pub(super) use presence::FilePresence;

mod presence;
mod retention;

const INSERT_EVENT: &str =
    "INSERT INTO events (topic, seq, event_id, timestamp, source, payload, pos)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (topic, event_id) DO NOTHING";
const LAST_SEQ: &str = "SELECT last_seq FROM topics WHERE topic = ?1";
const KEPT_KEY: &str = "SELECT 1 FROM kept_keys WHERE topic = ?1 AND event_id = ?2";
/// Advances a topic's `last_seq` and its stored-event count by the same step (SET reads the
/// old row on its right-hand side).
const PUT_LAST_SEQ: &str = "INSERT INTO topics (topic, last_seq, events) VALUES (?1, ?2, ?2)
     ON CONFLICT (topic) DO UPDATE SET
         events = events + excluded.last_seq - last_seq,
         last_seq = excluded.last_seq";
const ADD_COUNTERS: &str = "UPDATE counters SET received = received + ?1,
     unique_processed = unique_processed + ?2, duplicate_dropped = duplicate_dropped + ?3,
     last_pos = ?4
     WHERE id = 0";
/// `PRAGMA auto_vacuum` value of incremental auto-vacuum.
const INCREMENTAL: i64 = 2;
/// Freed pages given back to the file system per retention step (1 MiB of 4 KiB pages).
const VACUUM_PAGES: i64 = 256;
const READ_COUNTERS: &str =
    "SELECT received, unique_processed, duplicate_dropped, last_pos FROM counters WHERE id = 0";

/// The only writing connection of one partition database. Blocking: the service runs it on
/// its own thread (`writer_thread`); benchmarks and tools call it directly.
#[derive(Debug)]
pub struct SqliteWriter {
    conn: Connection,
    path: String,
    /// The identity recorded inside the database (and in the data dir's manifest).
    identity: String,
    /// The file this connection opened: if the path stops naming it (deleted, replaced),
    /// commits are refused instead of going into an unlinked file.
    presence: FilePresence,
    /// Lifetime totals as of the last commit; equal to the `counters` row.
    totals: Totals,
    /// The highest position given (`counters.last_pos`) as of the last commit.
    last_pos: i64,
    /// Pruned events' keys exist: each new candidate is also looked up there.
    has_kept_keys: bool,
    /// Events the next retention step may touch (adapted to the step budget).
    step_events: i64,
    /// The database has incremental auto-vacuum (set when the file was created), so freed
    /// pages can be given back to the file system.
    incremental_vacuum: bool,
    checkpointer: Checkpointer,
    /// Commits since the WAL size was last checked.
    commits_since_size_check: u32,
}

impl SqliteWriter {
    /// Opens (creating and migrating) a partition database.
    pub fn open(path: &Path, options: &WriterOptions) -> Result<Self, StoreError> {
        let path_str = path.display().to_string();
        let sqlite = |source| StoreError::Sqlite {
            path: path_str.clone(),
            source,
        };
        let cannot_open = |source| match schema::out_of_descriptors() {
            false => sqlite(source),
            true => StoreError::TooManyOpenFiles {
                path: path_str.clone(),
            },
        };
        let mut conn = Connection::open(path).map_err(cannot_open)?;
        schema::configure(&mut conn, options).map_err(cannot_open)?;
        let found = schema::migrate(&mut conn).map_err(sqlite)?;
        if found > schema::VERSION {
            return Err(StoreError::NewerSchema {
                path: path_str,
                found,
                known: schema::VERSION,
            });
        }
        let identity = schema::identity(&conn).map_err(sqlite)?;
        let presence = FilePresence::new(path).map_err(|source| StoreError::Io {
            path: path_str.clone(),
            source,
        })?;
        let (totals, last_pos) = read_totals(&conn).map_err(sqlite)?;
        let has_kept_keys: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM kept_keys)", [], |r| r.get(0))
            .map_err(sqlite)?;
        let auto_vacuum: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(sqlite)?;
        let newest_mark: Option<i64> = conn
            .query_row("SELECT max(at) FROM commit_marks", [], |r| r.get(0))
            .map_err(sqlite)?;
        // A clock stepped back while the service was down never makes marks go backwards.
        if let Some(at) = newest_mark {
            crate::clock::not_before(at);
        }
        let checkpointer = Checkpointer::spawn(path).map_err(|source| StoreError::Io {
            path: path_str.clone(),
            source,
        })?;
        Ok(Self {
            conn,
            path: path_str,
            identity,
            presence,
            totals,
            last_pos,
            has_kept_keys,
            step_events: MIN_STEP_EVENTS * 4,
            incremental_vacuum: auto_vacuum == INCREMENTAL,
            checkpointer,
            commits_since_size_check: 0,
        })
    }

    /// The identity recorded inside the database.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Lifetime totals as of the last commit (or the opening).
    pub fn totals_now(&self) -> Totals {
        self.totals
    }

    pub(super) fn presence(&self) -> FilePresence {
        self.presence.clone()
    }

    /// Hands the checkpoint to the background thread, and every so often enforces the WAL
    /// size bound in the foreground.
    fn after_commit(&mut self) {
        self.checkpointer.nudge();
        self.commits_since_size_check += 1;
        if self.commits_since_size_check < 64 {
            return;
        }
        self.bound_wal();
    }

    /// Checkpoints in the foreground when the WAL is over its bound.
    fn bound_wal(&mut self) {
        self.commits_since_size_check = 0;
        let wal_bytes = self.checkpointer.wal_bytes();
        if wal_bytes > MAX_WAL_BYTES {
            tracing::warn!(path = %self.path, wal_bytes, "WAL over its bound; checkpointing in the foreground");
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            {
                tracing::warn!(path = %self.path, error = %e, "foreground checkpoint failed");
            }
        }
    }
}

impl SqliteWriter {
    /// Refused unless the path still names the file this writer opened.
    pub fn check_present(&self) -> Result<(), StoreError> {
        self.presence.check()
    }

    /// Stores `candidates` in one transaction (see `PartitionWriter::commit_batch`).
    pub fn commit_batch(
        &mut self,
        candidates: &[&Event],
        cached_duplicates: u64,
    ) -> Result<Vec<bool>, StoreError> {
        // A commit into a file that no longer has a name would be acknowledged and then lost.
        self.check_present()?;
        let sqlite = sqlite_error(&self.path);
        let tx = begin_immediate(&mut self.conn, &self.path)?;
        let mut inserted = Vec::with_capacity(candidates.len());
        let mut last_pos = self.last_pos;
        {
            let mut insert = tx.prepare_cached(INSERT_EVENT).map_err(sqlite)?;
            let mut last_seq = tx.prepare_cached(LAST_SEQ).map_err(sqlite)?;
            let mut kept = tx.prepare_cached(KEPT_KEY).map_err(sqlite)?;
            // Per topic touched by this batch: (last seq, whether this batch advanced it).
            let mut seqs: HashMap<&str, (i64, bool), ahash::RandomState> = HashMap::default();
            for event in candidates {
                let (seq, advanced) = match seqs.get_mut(event.topic.as_str()) {
                    Some(entry) => entry,
                    None => {
                        let stored: Option<i64> = last_seq
                            .query_row([&event.topic], |r| r.get(0))
                            .optional()
                            .map_err(sqlite)?;
                        seqs.entry(&event.topic)
                            .or_insert((stored.unwrap_or(0), false))
                    }
                };
                // A pruned event's key is still a duplicate.
                if self.has_kept_keys
                    && kept
                        .exists(params![event.topic, event.event_id])
                        .map_err(sqlite)?
                {
                    inserted.push(false);
                    continue;
                }
                let changed = insert
                    .execute(params![
                        event.topic,
                        *seq + 1,
                        event.event_id,
                        event.timestamp,
                        event.source,
                        event.payload.get(),
                        last_pos + 1,
                    ])
                    .map_err(sqlite)?;
                if changed == 1 {
                    last_pos += 1;
                    *seq += 1;
                    *advanced = true;
                }
                inserted.push(changed == 1);
            }
            let mut put_seq = tx.prepare_cached(PUT_LAST_SEQ).map_err(sqlite)?;
            for (topic, (seq, _)) in seqs.iter().filter(|(_, (_, advanced))| *advanced) {
                put_seq.execute(params![topic, seq]).map_err(sqlite)?;
            }
        }
        let unique = inserted.iter().filter(|&&new| new).count() as u64;
        let delta = Totals {
            received: candidates.len() as u64 + cached_duplicates,
            unique_processed: unique,
            duplicate_dropped: candidates.len() as u64 - unique + cached_duplicates,
        };
        tx.execute(
            ADD_COUNTERS,
            params![
                sql_int(delta.received),
                sql_int(delta.unique_processed),
                sql_int(delta.duplicate_dropped),
                last_pos,
            ],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        self.totals += delta;
        self.last_pos = last_pos;
        self.after_commit();
        // Deleted during the commit: the batch went into the unlinked file; answer an error
        // (the client retries) rather than a 200 for events no restart will find.
        self.check_present()?;
        Ok(inserted)
    }

    /// A small write in its own transaction (see `PartitionWriter::probe`).
    pub fn probe(&mut self) -> Result<(), StoreError> {
        self.check_present()?;
        self.conn
            .execute_batch(
                "BEGIN IMMEDIATE; UPDATE counters SET received = received WHERE id = 0; COMMIT;",
            )
            .map_err(|source| {
                // A failed COMMIT can leave the transaction open; end it so the next batch can begin.
                let _ = self.conn.execute_batch("ROLLBACK");
                StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                }
            })
    }
}

/// Maps a SQLite error on the database at `path`.
fn sqlite_error(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    }
}

/// A write transaction that takes the database's write lock at once.
fn begin_immediate<'c>(
    conn: &'c mut Connection,
    path: &str,
) -> Result<rusqlite::Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite_error(path))
}

/// The lifetime totals and the highest position given.
fn read_totals(conn: &Connection) -> rusqlite::Result<(Totals, i64)> {
    // Counters only ever grow from 0, so they are never negative.
    let count = |r: &rusqlite::Row<'_>, i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    conn.query_row(READ_COUNTERS, [], |r| {
        let totals = Totals {
            received: count(r, 0)?,
            unique_processed: count(r, 1)?,
            duplicate_dropped: count(r, 2)?,
        };
        Ok((totals, r.get(3)?))
    })
}

/// SQLite integers are i64; a batch's counts are far below i64::MAX.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
