//! The values the store takes and gives: lifetime totals, stored events and their pages,
//! topics, a commit's batch, what retention leaves stored.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::Event;

/// Lifetime counters, kept in the same transaction as the events they count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub received: u64,
    pub unique_processed: u64,
    pub duplicate_dropped: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Self) {
        self.received += other.received;
        self.unique_processed += other.unique_processed;
        self.duplicate_dropped += other.duplicate_dropped;
    }
}

/// One stored event as `/events` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub topic: String,
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    /// The JSON object as it was published.
    pub payload: Box<RawValue>,
    /// 1, 2, 3, … per topic, without gaps, in commit order.
    pub seq: i64,
    /// Its place in its partition's commit order (increasing, never reused, not gapless);
    /// what a stream of every topic resumes from. Not part of the event's JSON.
    #[serde(skip)]
    pub position: i64,
}

impl StoredEvent {
    /// About the bytes this event takes as `/events` JSON (the fields plus the keys and quoting
    /// around them); what a page's byte bound counts.
    pub fn json_bytes(&self) -> usize {
        const FRAMING: usize = 96;
        FRAMING
            + self.topic.len()
            + self.event_id.len()
            + self.timestamp.len()
            + self.source.len()
            + self.payload.get().len()
    }
}

/// How large a page of events may get: at most `max_events`, and it ends with the event that
/// reaches `max_bytes` of JSON (so it always holds at least one event, and a caller can tell
/// that the byte bound, not the end of the data, ended it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl PageLimit {
    /// Takes rows from `rows` until the page is full; stops reading there, so a page is never
    /// held in memory beyond its bound plus one event.
    pub fn collect<E>(
        self,
        rows: impl IntoIterator<Item = Result<StoredEvent, E>>,
    ) -> Result<Vec<StoredEvent>, E> {
        let mut page = Vec::new();
        let mut bytes = 0;
        for row in rows {
            if page.len() >= self.max_events || bytes >= self.max_bytes {
                break;
            }
            let event = row?;
            bytes += event.json_bytes();
            page.push(event);
        }
        Ok(page)
    }
}

/// One topic as `GET /topics` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    pub topic: String,
    /// Events of the topic stored now.
    pub events: u64,
    /// The highest `seq` ever given in the topic.
    pub last_seq: i64,
}

/// Merges per-partition topic pages (each sorted) into the first `limit` topics by byte order.
pub(crate) fn merge_topic_pages(pages: Vec<Vec<TopicInfo>>, limit: usize) -> Vec<TopicInfo> {
    let mut all: Vec<TopicInfo> = pages.into_iter().flatten().collect();
    all.sort_unstable_by(|a, b| a.topic.as_bytes().cmp(b.topic.as_bytes()));
    all.truncate(limit);
    all
}

/// One commit's events: the jobs' shared event slices, and for each event (in order) whether
/// it goes to the store (`false`: the front cache already knew it as a duplicate). Cheap to
/// clone, so it can travel to a writer thread.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    parts: Vec<Arc<[Event]>>,
    /// Per event of `parts`, flattened: a candidate for the store.
    candidate: Vec<bool>,
    cached_duplicates: u64,
}

impl CommitBatch {
    /// Adds one job's events; `is_candidate` says, per event, whether the store must see it.
    pub fn push(&mut self, events: Arc<[Event]>, is_candidate: impl IntoIterator<Item = bool>) {
        for candidate in is_candidate {
            self.candidate.push(candidate);
            self.cached_duplicates += u64::from(!candidate);
        }
        self.parts.push(events);
    }

    /// The events the store must see, in batch order.
    pub fn candidates(&self) -> Vec<&Event> {
        self.events()
            .filter_map(|(event, candidate)| candidate.then_some(event))
            .collect()
    }

    /// Duplicates the front cache answered, counted as received with the commit.
    pub fn cached_duplicates(&self) -> u64 {
        self.cached_duplicates
    }

    /// Every event of the batch with whether it is a candidate, in order.
    pub fn events(&self) -> impl Iterator<Item = (&Event, bool)> {
        self.parts
            .iter()
            .flat_map(|part| part.iter())
            .zip(self.candidate.iter().copied())
    }
}

/// What is stored now, as retention leaves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Events stored now (not pruned).
    pub events: u64,
    /// The commit time (Unix ms) at or before which the oldest retained event was committed,
    /// when retention keeps commit times.
    pub oldest_retained_ms: Option<i64>,
}
