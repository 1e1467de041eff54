//! Reads of the shared database: `/events` pages, the topic list and the lifetime totals.
//! Every replica reads the same rows, so `/events` and `/stats` agree across replicas.

use serde_json::value::RawValue;
use tokio_postgres::Row;

use super::{Shared, count, pg_int};
use crate::store::{StoreError, StoredEvent, Totals};

const COLUMNS: &str = "topic, event_id, timestamp, source, payload, seq";

pub(super) async fn topic_page(
    shared: &Shared,
    partition: usize,
    topic: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let client = shared.client().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM events WHERE partition = $1 AND topic = $2 AND seq > $3
                 ORDER BY seq LIMIT $4"
            ),
            &[
                &pg_int(partition),
                &topic.as_bytes(),
                &after,
                &(limit as i64),
            ],
        )
        .await
        .map_err(shared.error("read events"))?;
    rows.iter().map(|row| stored_event(shared, row)).collect()
}

pub(super) async fn page(
    shared: &Shared,
    partition: usize,
    after: Option<(&str, i64)>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let client = shared.client().await?;
    let partition = pg_int(partition);
    let limit = limit as i64;
    let rows = match after {
        None => {
            client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM events WHERE partition = $1
                         ORDER BY topic, seq LIMIT $2"
                    ),
                    &[&partition, &limit],
                )
                .await
        }
        Some((topic, seq)) => {
            client
                .query(
                    &format!(
                    "SELECT {COLUMNS} FROM events WHERE partition = $1 AND (topic, seq) > ($2, $3)
                         ORDER BY topic, seq LIMIT $4"
                ),
                    &[&partition, &topic.as_bytes(), &seq, &limit],
                )
                .await
        }
    }
    .map_err(shared.error("read events"))?;
    rows.iter().map(|row| stored_event(shared, row)).collect()
}

pub(super) async fn topics(shared: &Shared) -> Result<Vec<String>, StoreError> {
    let client = shared.client().await?;
    let rows = client
        .query(
            "SELECT topic FROM topics WHERE last_seq > 0 ORDER BY topic",
            &[],
        )
        .await
        .map_err(shared.error("read topics"))?;
    rows.iter().map(|row| text(shared, row.get(0))).collect()
}

/// Lifetime totals per partition, summed over counter slots in one snapshot.
pub(super) async fn totals(shared: &Shared, partitions: usize) -> Result<Vec<Totals>, StoreError> {
    let client = shared.client().await?;
    let rows = client
        .query(
            "SELECT partition, sum(received)::bigint, sum(unique_processed)::bigint,
                    sum(duplicate_dropped)::bigint
             FROM counters GROUP BY partition",
            &[],
        )
        .await
        .map_err(shared.error("read counters"))?;
    let mut totals = vec![Totals::default(); partitions];
    for row in rows {
        let partition: i32 = row.get(0);
        if let Some(slot) = usize::try_from(partition)
            .ok()
            .and_then(|p| totals.get_mut(p))
        {
            *slot = Totals {
                received: count(row.get(1)),
                unique_processed: count(row.get(2)),
                duplicate_dropped: count(row.get(3)),
            };
        }
    }
    Ok(totals)
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
