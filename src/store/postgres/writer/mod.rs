//! The batch transaction on the shared database.
//!
//! 1. Lock the batch's topics: upsert their `topics` rows in byte order (`ON CONFLICT DO
//!    UPDATE` locks an existing row, a new one is locked by its insert). Every writer locks in
//!    the same order, so two batches can wait on each other but never deadlock, and while a
//!    batch holds a topic no other replica can add events to it.
//! 2. Read which candidates are already stored or remembered (`kept_keys`, see `retention`;
//!    a new snapshot, taken after the locks, so it sees every committed event of these topics).
//! 3. In memory: first occurrence of an unseen key is new and gets its topic's next `seq`;
//!    everything else is a duplicate.
//! 4. One statement takes the new events' positions from the partition's `positions` row
//!    (locking it until COMMIT: the next commit of the partition, from any replica, takes the
//!    positions after these, so positions increase in commit order and a stream reading up to
//!    one never misses an earlier one), inserts the new events (`ON CONFLICT DO NOTHING`, and
//!    the count must match, or the batch is rolled back), advances `topics.last_seq` and adds
//!    to this writer's counter slot, returning the partition's totals. Lock order is topics,
//!    then the partition's position row, so commits never deadlock.
//! 5. COMMIT. Only a confirmed COMMIT returns `Ok`; any error, a lost connection included,
//!    returns `Err` and the batch's publishes get 503.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Shared, count, pg_count, pg_int};
use crate::event::Event;
use crate::store::{CommitBatch, PartitionWriter, StoreError, Totals};
use async_trait::async_trait;

/// Counter slots per partition. A writer picks one at random: replicas collide rarely, and a
/// collision only makes two commits queue on one row.
const COUNTER_SLOTS: u32 = 64;

const LOCK_TOPICS: &str = "INSERT INTO topics (topic, partition, last_seq)
     SELECT t, $2::integer, 0 FROM unnest($1::bytea[]) AS t ORDER BY t
     ON CONFLICT (topic) DO UPDATE SET last_seq = topics.last_seq
     RETURNING topic, last_seq";

/// Keys stored as events, or remembered after their events were pruned (retention moves keys
/// from `events` to `kept_keys` in one statement, so this one statement's snapshot sees each in
/// exactly one of them).
const STORED_KEYS: &str = "SELECT e.topic, e.event_id
     FROM unnest($1::bytea[], $2::bytea[]) AS k(topic, event_id)
     JOIN events e ON e.topic = k.topic AND e.event_id = k.event_id
     UNION ALL
     SELECT g.topic, g.event_id
     FROM unnest($1::bytea[], $2::bytea[]) AS k(topic, event_id)
     JOIN kept_keys g ON g.topic = k.topic AND g.event_id = k.event_id";

const WRITE: &str = "WITH placed AS (
         INSERT INTO positions AS p (partition, last_pos)
         SELECT $1::integer, cardinality($3::bytea[]) WHERE cardinality($3::bytea[]) > 0
         ON CONFLICT (partition) DO UPDATE SET last_pos = p.last_pos + excluded.last_pos
         RETURNING last_pos - cardinality($3::bytea[]) AS before
     ), inserted AS (
         INSERT INTO events (partition, topic, seq, event_id, timestamp, source, payload, pos)
         SELECT $1::integer, n.topic, n.seq, n.event_id, n.timestamp, n.source, n.payload,
                placed.before + n.ord
         FROM unnest($3::bytea[], $4::bigint[], $5::bytea[], $6::text[], $7::bytea[], $8::text[])
              WITH ORDINALITY AS n(topic, seq, event_id, timestamp, source, payload, ord)
         CROSS JOIN placed
         ON CONFLICT (topic, event_id) DO NOTHING
         RETURNING 1
     ), advanced AS (
         UPDATE topics SET events = topics.events + v.last_seq - topics.last_seq,
                           last_seq = v.last_seq
         FROM unnest($9::bytea[], $10::bigint[]) AS v(topic, last_seq)
         WHERE topics.topic = v.topic
         RETURNING 1
     ), bumped AS (
         INSERT INTO counters AS c (partition, slot, received, unique_processed, duplicate_dropped)
         VALUES ($1::integer, $2::integer, $11::bigint, $12::bigint, $13::bigint)
         ON CONFLICT (partition, slot) DO UPDATE SET
             received = c.received + excluded.received,
             unique_processed = c.unique_processed + excluded.unique_processed,
             duplicate_dropped = c.duplicate_dropped + excluded.duplicate_dropped
         RETURNING received, unique_processed, duplicate_dropped
     )
     SELECT (SELECT count(*) FROM inserted),
            (SELECT count(*) FROM advanced),
            b.received + coalesce(sum(o.received), 0)::bigint,
            b.unique_processed + coalesce(sum(o.unique_processed), 0)::bigint,
            b.duplicate_dropped + coalesce(sum(o.duplicate_dropped), 0)::bigint,
            -- Wakes the stream subscribers of every replica once this commits (NOTIFY is
            -- delivered at COMMIT, never for a rolled-back batch).
            (SELECT count(pg_notify('uts_aggregator_commits', $14::text))
             FROM (SELECT 1 WHERE cardinality($3::bytea[]) > 0) AS any_new)
     FROM bumped b
     LEFT JOIN counters o ON o.partition = $1::integer AND o.slot <> $2::integer
     GROUP BY b.received, b.unique_processed, b.duplicate_dropped";

/// The writer of one partition. Holds no connection between batches: each batch takes one
/// from the pool, so a connection PostgreSQL dropped is replaced on the next batch.
pub(super) struct PgWriter {
    shared: Arc<Shared>,
    partition: i32,
    slot: i32,
    totals: Totals,
}

impl PgWriter {
    pub(super) fn new(shared: Arc<Shared>, partition: usize, totals: Totals) -> Self {
        Self {
            shared,
            partition: pg_int(partition),
            slot: fastrand::u32(..COUNTER_SLOTS) as i32,
            totals,
        }
    }

    async fn commit(
        &self,
        candidates: &[&Event],
        cached_duplicates: u64,
    ) -> Result<(Vec<bool>, Totals), StoreError> {
        let shared = &self.shared;
        let mut client = shared.client().await?;
        let tx = client.transaction().await.map_err(shared.error("begin"))?;

        let mut last_seq: HashMap<&[u8], i64, ahash::RandomState> = HashMap::default();
        let mut stored: HashSet<(&[u8], &[u8]), ahash::RandomState> = HashSet::default();
        if !candidates.is_empty() {
            let mut topics: Vec<&[u8]> = candidates.iter().map(|e| e.topic.as_bytes()).collect();
            topics.sort_unstable();
            topics.dedup();
            let lock_topics = tx
                .prepare_cached(LOCK_TOPICS)
                .await
                .map_err(shared.error("prepare"))?;
            for row in tx
                .query(&lock_topics, &[&topics, &self.partition])
                .await
                .map_err(shared.error("lock topics"))?
            {
                let topic: &[u8] = row.get(0);
                if let Ok(i) = topics.binary_search(&topic) {
                    last_seq.insert(topics[i], row.get(1));
                }
            }
            // Key -> index of its first candidate, to map stored rows back to borrowed keys.
            let mut index: HashMap<(&[u8], &[u8]), usize, ahash::RandomState> = HashMap::default();
            let (mut key_topics, mut key_ids) = (Vec::new(), Vec::new());
            for (i, event) in candidates.iter().enumerate() {
                let key = (event.topic.as_bytes(), event.event_id.as_bytes());
                if let Entry::Vacant(slot) = index.entry(key) {
                    slot.insert(i);
                    key_topics.push(key.0);
                    key_ids.push(key.1);
                }
            }
            let stored_keys = tx
                .prepare_cached(STORED_KEYS)
                .await
                .map_err(shared.error("prepare"))?;
            for row in tx
                .query(&stored_keys, &[&key_topics, &key_ids])
                .await
                .map_err(shared.error("find stored keys"))?
            {
                let (topic, event_id): (&[u8], &[u8]) = (row.get(0), row.get(1));
                if let Some(&i) = index.get(&(topic, event_id)) {
                    let event = candidates[i];
                    stored.insert((event.topic.as_bytes(), event.event_id.as_bytes()));
                }
            }
        }

        let Planned {
            new,
            inserted,
            delta,
            advanced_topics,
            advanced_seqs,
        } = plan_write(candidates, cached_duplicates, stored, last_seq);
        let unique = delta.unique_processed;
        // Prepared once per connection (deadpool caches it): a commit costs BEGIN, lock, find
        // stored keys, write, COMMIT, with no extra parse round trip per statement.
        let write = tx
            .prepare_cached(WRITE)
            .await
            .map_err(shared.error("prepare"))?;
        let row = tx
            .query_one(
                &write,
                &[
                    &self.partition,
                    &self.slot,
                    &new.topic,
                    &new.seq,
                    &new.event_id,
                    &new.timestamp,
                    &new.source,
                    &new.payload,
                    &advanced_topics,
                    &advanced_seqs,
                    &pg_count(delta.received),
                    &pg_count(delta.unique_processed),
                    &pg_count(delta.duplicate_dropped),
                    &notify_payload(self.partition, &advanced_topics),
                ],
            )
            .await
            .map_err(shared.error("write batch"))?;
        let (written, advanced): (i64, i64) = (row.get(0), row.get(1));
        if written as u64 != unique || advanced as usize != advanced_topics.len() {
            // Cannot happen while every writer locks topics first; refuse rather than miscount.
            return Err(StoreError::Postgres {
                location: shared.label.clone(),
                what: "write batch",
                reason: format!(
                    "expected {unique} new events on {} topics, wrote {written} on {advanced}; rolled back",
                    advanced_topics.len()
                ),
            });
        }
        let totals = Totals {
            received: count(row.get(2)),
            unique_processed: count(row.get(3)),
            duplicate_dropped: count(row.get(4)),
        };
        tx.commit().await.map_err(shared.error("commit"))?;
        Ok((inserted, totals))
    }
}

/// What one batch writes, decided from what the locked rows say (no I/O).
/// Most bytes of a NOTIFY payload this writer sends (PostgreSQL's limit is 8000).
const MAX_NOTIFY_BYTES: usize = 7900;

/// What a commit NOTIFYs: `<partition>`, then ` <hex topic>,<hex topic>…` for the topics it
/// advanced when they fit (readers of other topics are not woken; see `listen.rs`). Topics are
/// hex, since a topic may hold any character; without them every reader of the partition wakes.
pub(super) fn notify_payload(partition: i32, topics: &[&[u8]]) -> String {
    use std::fmt::Write;
    let mut payload = partition.to_string();
    let hex_bytes: usize = topics.iter().map(|t| 2 * t.len() + 1).sum();
    if payload.len() + hex_bytes > MAX_NOTIFY_BYTES {
        return payload;
    }
    for (i, topic) in topics.iter().enumerate() {
        payload.push(if i == 0 { ' ' } else { ',' });
        for byte in *topic {
            let _ = write!(payload, "{byte:02x}");
        }
    }
    payload
}

struct Planned<'a> {
    new: NewEvents<'a>,
    /// Per candidate: stored by this batch.
    inserted: Vec<bool>,
    delta: Totals,
    advanced_topics: Vec<&'a [u8]>,
    advanced_seqs: Vec<i64>,
}

/// The pure step of a commit: given the keys already stored and each locked topic's last
/// `seq`, which candidates are new (a stored key or a repeat within the batch is not), the
/// `seq` each new one gets (one more than its topic's last, in batch order), the counters'
/// change, and each advanced topic's new last `seq`.
fn plan_write<'a>(
    candidates: &[&'a Event],
    cached_duplicates: u64,
    mut stored: HashSet<(&'a [u8], &'a [u8]), ahash::RandomState>,
    mut last_seq: HashMap<&'a [u8], i64, ahash::RandomState>,
) -> Planned<'a> {
    let mut new = NewEvents::default();
    let mut inserted = Vec::with_capacity(candidates.len());
    for event in candidates {
        let key = (event.topic.as_bytes(), event.event_id.as_bytes());
        // `insert` is false for a stored key or a repeat within the batch.
        let is_new = stored.insert(key);
        if is_new {
            let seq = last_seq.entry(key.0).or_insert(0);
            *seq += 1;
            new.push(event, *seq);
        }
        inserted.push(is_new);
    }
    let unique = new.seq.len() as u64;
    let delta = Totals {
        received: candidates.len() as u64 + cached_duplicates,
        unique_processed: unique,
        duplicate_dropped: candidates.len() as u64 - unique + cached_duplicates,
    };
    let (advanced_topics, advanced_seqs) = new.advanced(&last_seq);
    Planned {
        new,
        inserted,
        delta,
        advanced_topics,
        advanced_seqs,
    }
}

/// The new events of a batch, column by column, as the insert's arrays.
#[derive(Default)]
struct NewEvents<'a> {
    topic: Vec<&'a [u8]>,
    seq: Vec<i64>,
    event_id: Vec<&'a [u8]>,
    timestamp: Vec<&'a str>,
    source: Vec<&'a [u8]>,
    payload: Vec<&'a str>,
}

impl<'a> NewEvents<'a> {
    fn push(&mut self, event: &'a Event, seq: i64) {
        self.topic.push(event.topic.as_bytes());
        self.seq.push(seq);
        self.event_id.push(event.event_id.as_bytes());
        self.timestamp.push(&event.timestamp);
        self.source.push(event.source.as_bytes());
        self.payload.push(event.payload.get());
    }

    /// Each topic that got new events, with its new last `seq`.
    fn advanced(
        &self,
        last_seq: &HashMap<&'a [u8], i64, ahash::RandomState>,
    ) -> (Vec<&'a [u8]>, Vec<i64>) {
        let mut topics = self.topic.clone();
        topics.sort_unstable();
        topics.dedup();
        let seqs = topics.iter().map(|t| last_seq[t]).collect();
        (topics, seqs)
    }
}

#[async_trait]
impl PartitionWriter for PgWriter {
    fn totals(&self) -> Totals {
        self.totals
    }

    async fn commit_batch(&mut self, batch: &CommitBatch) -> Result<Vec<bool>, StoreError> {
        let (inserted, totals) = self
            .commit(&batch.candidates(), batch.cached_duplicates())
            .await?;
        self.totals = totals;
        Ok(inserted)
    }

    async fn probe(&mut self) -> Result<(), StoreError> {
        let client = self.shared.client().await?;
        client
            .batch_execute("BEGIN; UPDATE meta SET value = value WHERE key = 'partitions'; COMMIT;")
            .await
            .map_err(self.shared.error("probe"))
    }
}

#[cfg(test)]
mod tests;
