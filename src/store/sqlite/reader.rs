//! The read side of a partition database: `/events` pages and the topic list, on their own
//! connections so a read never waits for the writer (WAL gives readers a snapshot).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, params};
use serde_json::value::RawValue;

use crate::store::{StoreError, StoredEvent};

/// Idle read connections kept per partition; more concurrent reads open extra connections
/// that are closed afterwards.
const MAX_IDLE_CONNECTIONS: usize = 4;

/// Read access to one partition database. Cheap to share; blocking, so call it from
/// `spawn_blocking`.
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

    /// Up to `limit` events of `topic` with `seq > after`, ascending.
    pub(super) fn topic_page(
        &self,
        topic: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.query(
            "SELECT topic, event_id, timestamp, source, payload, seq FROM events
             WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![topic, after, limit as i64],
        )
    }

    /// Up to `limit` events ordered by (`topic`, `seq`), after the position `after`.
    pub(super) fn page(
        &self,
        after: Option<(&str, i64)>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match after {
            None => self.query(
                "SELECT topic, event_id, timestamp, source, payload, seq FROM events
                 ORDER BY topic, seq LIMIT ?1",
                params![limit as i64],
            ),
            Some((topic, seq)) => self.query(
                "SELECT topic, event_id, timestamp, source, payload, seq FROM events
                 WHERE (topic, seq) > (?1, ?2) ORDER BY topic, seq LIMIT ?3",
                params![topic, seq, limit as i64],
            ),
        }
    }

    /// Every topic that has at least one stored event.
    pub(super) fn topics(&self) -> Result<Vec<String>, StoreError> {
        self.with_connection(|conn| {
            let mut stmt = conn.prepare_cached("SELECT topic FROM topics ORDER BY topic")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.with_connection(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(topic, event_id, timestamp, source, payload, seq)| {
                let payload = RawValue::from_string(payload).map_err(|source| {
                    StoreError::CorruptPayload {
                        path: self.path.display().to_string(),
                        source,
                    }
                })?;
                Ok(StoredEvent {
                    topic,
                    event_id,
                    timestamp,
                    source,
                    payload,
                    seq,
                })
            })
            .collect()
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
