//! The read side of a partition database: `/events` pages and the topic list, on their own
//! connections so a read never waits for the writer (WAL gives readers a snapshot).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, params};
use serde_json::value::RawValue;

use crate::store::{PageLimit, StoreError, StoredEvent, TopicInfo};

/// Idle read connections kept per partition, and the reads of one partition the store runs at
/// once (see `SqliteStore::read`); a read beside those (the totals over every partition) opens
/// an extra connection that is closed afterwards.
pub(super) const MAX_IDLE_CONNECTIONS: usize = 4;

/// Read access to one partition database. Cheap to share; blocking: the store runs it on the
/// blocking pool.
#[derive(Debug)]
pub(super) struct PartitionReader {
    path: PathBuf,
    /// Idle connections, taken for one read and put back after it.
    idle: Mutex<Vec<Connection>>,
}

impl PartitionReader {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.into(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Events of `topic` with `seq > after`, ascending, as many as `limit` allows.
    pub(super) fn topic_page(
        &self,
        topic: &str,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.query(
            "SELECT topic, event_id, timestamp, source, payload, seq, pos FROM events
             WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![topic, after, limit.max_events as i64],
            limit,
        )
    }

    /// Events with `pos > after`, in commit order, as many as `limit` allows.
    pub(super) fn position_page(
        &self,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.query(
            "SELECT topic, event_id, timestamp, source, payload, seq, pos FROM events
             WHERE pos > ?1 ORDER BY pos LIMIT ?2",
            params![after, limit.max_events as i64],
            limit,
        )
    }

    /// Events stored now (not pruned), and the commit time of the oldest of them (from the
    /// commit marks: at or before it).
    pub(super) fn stored(&self) -> Result<(i64, Option<i64>), StoreError> {
        self.with_connection(|conn| {
            conn.prepare_cached(
                "SELECT unique_processed - pruned_events,
                        (SELECT min(at) FROM commit_marks WHERE pos > counters.pruned_pos)
                 FROM counters WHERE id = 0",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        })
    }

    /// The highest position given so far.
    pub(super) fn last_position(&self) -> Result<i64, StoreError> {
        self.with_connection(|conn| {
            conn.prepare_cached("SELECT last_pos FROM counters WHERE id = 0")?
                .query_row([], |r| r.get(0))
        })
    }

    /// Events ordered by (`topic`, `seq`), after the position `after`, as many as `limit`
    /// allows.
    pub(super) fn page(
        &self,
        after: Option<(&str, i64)>,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let max = limit.max_events as i64;
        match after {
            None => self.query(
                "SELECT topic, event_id, timestamp, source, payload, seq, pos FROM events
                 ORDER BY topic, seq LIMIT ?1",
                params![max],
                limit,
            ),
            Some((topic, seq)) => self.query(
                "SELECT topic, event_id, timestamp, source, payload, seq, pos FROM events
                 WHERE (topic, seq) > (?1, ?2) ORDER BY topic, seq LIMIT ?3",
                params![topic, seq, max],
                limit,
            ),
        }
    }

    /// Up to `limit` topics after `after`, in byte order.
    pub(super) fn topics_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, StoreError> {
        self.with_connection(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT topic, events, last_seq FROM topics WHERE topic > ?1
                 ORDER BY topic LIMIT ?2",
            )?;
            // Text compares with memcmp in SQLite, so "" sorts before every topic.
            let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], |r| {
                Ok(TopicInfo {
                    topic: r.get(0)?,
                    events: r.get::<_, i64>(1)?.max(0) as u64,
                    last_seq: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(super) fn last_seq(&self, topic: &str) -> Result<i64, StoreError> {
        self.with_connection(|conn| {
            conn.prepare_cached("SELECT coalesce(max(last_seq), 0) FROM topics WHERE topic = ?1")?
                .query_row([topic], |r| r.get::<_, i64>(0))
        })
    }

    pub(super) fn topic_count(&self) -> Result<u64, StoreError> {
        self.with_connection(|conn| {
            conn.prepare_cached("SELECT count(*) FROM topics")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
        })
    }

    fn query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let path = || self.path.display().to_string();
        let rows = self.with_connection(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |r| {
                Ok(StoredEvent {
                    topic: r.get(0)?,
                    event_id: r.get(1)?,
                    timestamp: r.get(2)?,
                    source: r.get(3)?,
                    payload: RawValue::from_string(r.get(4)?).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            4,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?,
                    seq: r.get(5)?,
                    position: r.get(6)?,
                })
            })?;
            Ok(limit.collect(rows))
        })?;
        rows.map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, cause) => {
                match cause.downcast::<serde_json::Error>() {
                    Ok(source) => StoreError::CorruptPayload {
                        path: path(),
                        source: *source,
                    },
                    Err(other) => StoreError::Sqlite {
                        path: path(),
                        source: rusqlite::Error::FromSqlConversionFailure(
                            4,
                            rusqlite::types::Type::Text,
                            other,
                        ),
                    },
                }
            }
            source => StoreError::Sqlite {
                path: path(),
                source,
            },
        })
    }

    fn with_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let sqlite = |source| StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        };
        // A poisoned lock only means another reader panicked; the Vec inside is still valid.
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sqlite)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(sqlite)?;
                conn.pragma_update(None, "query_only", true)
                    .map_err(sqlite)?;
                conn
            }
        };
        let result = read(&conn).map_err(sqlite);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
        result
    }
}
