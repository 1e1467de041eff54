//! Reads of the shared database: `/events` pages, the topic list and the lifetime totals.
//! Every replica reads the same rows, so `/events` and `/stats` agree across replicas.

use futures_util::{StreamExt, pin_mut};
use serde_json::value::RawValue;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Shared, count, pg_int};
use crate::store::{PageLimit, StoreError, StoredEvent, TopicInfo, Totals};

const COLUMNS: &str = "topic, event_id, timestamp, source, payload, seq, pos";

pub(super) async fn topic_page(
    shared: &Shared,
    partition: usize,
    topic: &str,
    after: i64,
    limit: PageLimit,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE partition = $1 AND topic = $2 AND seq > $3
         ORDER BY seq LIMIT $4"
    );
    let max = limit.max_events as i64;
    let topic = topic.as_bytes();
    bounded_page(
        shared,
        &sql,
        &[&pg_int(partition), &topic, &after, &max],
        limit,
    )
    .await
}

/// Events of `partition` with `pos > after`, in commit order.
pub(super) async fn position_page(
    shared: &Shared,
    partition: usize,
    after: i64,
    limit: PageLimit,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE partition = $1 AND pos > $2 ORDER BY pos LIMIT $3"
    );
    let max = limit.max_events as i64;
    bounded_page(shared, &sql, &[&pg_int(partition), &after, &max], limit).await
}

/// Per partition, the highest position given so far.
pub(super) async fn last_positions(
    shared: &Shared,
    partitions: usize,
) -> Result<Vec<i64>, StoreError> {
    let client = shared.read_client().await?;
    let rows = client
        .query("SELECT partition, last_pos FROM positions", &[])
        .await
        .map_err(shared.error("read positions"))?;
    Ok(per_partition(&rows, partitions, |row| row.get(1)))
}

/// One value per partition from rows whose first column is the partition (partitions without
/// a row, or rows of unknown partitions: the default).
fn per_partition<T: Clone + Default>(
    rows: &[Row],
    partitions: usize,
    value: impl Fn(&Row) -> T,
) -> Vec<T> {
    let mut values = vec![T::default(); partitions];
    for row in rows {
        let partition: i32 = row.get(0);
        if let Some(slot) = usize::try_from(partition)
            .ok()
            .and_then(|p| values.get_mut(p))
        {
            *slot = value(row);
        }
    }
    values
}

/// Runs an events query and reads its rows as a stream, stopping at the page's bound, so the
/// page never holds more than the bound in memory.
async fn bounded_page(
    shared: &Shared,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    limit: PageLimit,
) -> Result<Vec<StoredEvent>, StoreError> {
    let client = shared.read_client().await?;
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(shared.error("prepare"))?;
    let rows = client
        .query_raw(&statement, params.iter().copied())
        .await
        .map_err(shared.error("read events"))?;
    pin_mut!(rows);
    let mut page = Vec::new();
    let mut bytes = 0;
    // The same rule as `PageLimit::collect`, on a stream.
    while page.len() < limit.max_events && bytes < limit.max_bytes {
        let Some(row) = rows.next().await else { break };
        let event = stored_event(shared, &row.map_err(shared.error("read events"))?)?;
        bytes += event.json_bytes();
        page.push(event);
    }
    Ok(page)
}

pub(super) async fn page(
    shared: &Shared,
    partition: usize,
    after: Option<(&str, i64)>,
    limit: PageLimit,
) -> Result<Vec<StoredEvent>, StoreError> {
    let partition = pg_int(partition);
    let max = limit.max_events as i64;
    match after {
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE partition = $1 ORDER BY topic, seq LIMIT $2"
            );
            bounded_page(shared, &sql, &[&partition, &max], limit).await
        }
        Some((topic, seq)) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE partition = $1 AND (topic, seq) > ($2, $3)
                 ORDER BY topic, seq LIMIT $4"
            );
            let topic = topic.as_bytes();
            bounded_page(shared, &sql, &[&partition, &topic, &seq, &max], limit).await
        }
    }
}

/// Up to `limit` topics after `after` in byte order (`bytea` compares bytes).
pub(super) async fn topics_page(
    shared: &Shared,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<TopicInfo>, StoreError> {
    let client = shared.read_client().await?;
    let after = after.unwrap_or("").as_bytes();
    let rows = client
        .query(
            // Stored now: the events ever stored minus those retention pruned.
            "SELECT t.topic, t.events - coalesce(p.pruned, 0), t.last_seq
             FROM topics t LEFT JOIN pruned_topics p ON p.topic = t.topic
             WHERE t.last_seq > 0 AND t.topic > $1
             ORDER BY t.topic LIMIT $2",
            &[&after, &(limit as i64)],
        )
        .await
        .map_err(shared.error("read topics"))?;
    rows.iter()
        .map(|row| {
            Ok(TopicInfo {
                topic: text(shared, row.get(0))?,
                events: count(row.get(1)),
                last_seq: row.get(2),
            })
        })
        .collect()
}

pub(super) async fn last_seq(shared: &Shared, topic: &str) -> Result<i64, StoreError> {
    let client = shared.read_client().await?;
    let row = client
        .query_one(
            "SELECT coalesce(max(last_seq), 0)::bigint FROM topics WHERE topic = $1",
            &[&topic.as_bytes()],
        )
        .await
        .map_err(shared.error("read a topic's last seq"))?;
    Ok(row.get(0))
}

pub(super) async fn topic_count(shared: &Shared) -> Result<u64, StoreError> {
    let client = shared.read_client().await?;
    let row = client
        .query_one("SELECT count(*) FROM topics WHERE last_seq > 0", &[])
        .await
        .map_err(shared.error("count topics"))?;
    Ok(count(row.get(0)))
}

/// Lifetime totals per partition, summed over counter slots in one snapshot.
pub(super) async fn totals(shared: &Shared, partitions: usize) -> Result<Vec<Totals>, StoreError> {
    let client = shared.read_client().await?;
    let rows = client
        .query(
            "SELECT partition, sum(received)::bigint, sum(unique_processed)::bigint,
                    sum(duplicate_dropped)::bigint
             FROM counters GROUP BY partition",
            &[],
        )
        .await
        .map_err(shared.error("read counters"))?;
    Ok(per_partition(&rows, partitions, |row| Totals {
        received: count(row.get(1)),
        unique_processed: count(row.get(2)),
        duplicate_dropped: count(row.get(3)),
    }))
}

fn stored_event(shared: &Shared, row: &Row) -> Result<StoredEvent, StoreError> {
    let payload: String = row.get(4);
    Ok(StoredEvent {
        topic: text(shared, row.get(0))?,
        event_id: text(shared, row.get(1))?,
        timestamp: row.get(2),
        source: text(shared, row.get(3))?,
        payload: RawValue::from_string(payload).map_err(|source| StoreError::CorruptPayload {
            path: shared.label.clone(),
            source,
        })?,
        seq: row.get(5),
        position: row.get(6),
    })
}

/// A `bytea` column that holds a string the service stored.
fn text(shared: &Shared, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|e| StoreError::Postgres {
        location: shared.label.clone(),
        what: "decode",
        reason: format!("stored text is not UTF-8: {e}"),
    })
}
