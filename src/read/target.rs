//! What a stream subscriber follows (one topic after a `seq`, or every topic after a position
//! per partition), how it reads the next page, and how a page becomes its SSE frame.

use bytes::Bytes;

use super::cursor::encode_cursor;
use crate::sse;
use crate::store::{PageLimit, Store, StoredEvent};

/// What a subscriber follows, and how far it has got.
pub(crate) enum Follow {
    /// One topic (owned by `partition`), after `seq` `after`.
    Topic {
        topic: String,
        partition: usize,
        after: i64,
    },
    /// Every topic, after a position per partition.
    All { after: Vec<i64> },
}

impl Follow {
    pub(super) fn partitions(&self) -> Vec<usize> {
        match self {
            Self::Topic { partition, .. } => vec![*partition],
            Self::All { after } => (0..after.len()).collect(),
        }
    }

    /// The next page of `partition` after where the subscriber is.
    pub(super) async fn read(
        &self,
        store: &dyn Store,
        partition: usize,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, crate::store::StoreError> {
        match self {
            Self::Topic { topic, after, .. } => {
                store.topic_page(partition, topic, *after, limit).await
            }
            Self::All { after } => {
                store
                    .position_page(partition, after[partition], limit)
                    .await
            }
        }
    }

    /// The page's messages; moves the subscriber past them. Each event is serialised straight
    /// into the frame (no copy of it in between).
    pub(super) fn frame(&mut self, partition: usize, events: &[StoredEvent]) -> Vec<u8> {
        let bytes: usize = events.iter().map(|e| e.json_bytes() + 64).sum();
        let mut frame = Vec::with_capacity(bytes);
        for event in events {
            let id = match self {
                Self::Topic { after, .. } => {
                    *after = event.seq;
                    event.seq.to_string()
                }
                Self::All { after } => {
                    after[partition] = event.position;
                    encode_cursor(after)
                }
            };
            // Serialising a stored event cannot fail (its payload is already JSON).
            sse::write_event(&mut frame, &id, |out| {
                let _ = serde_json::to_writer(out, event);
            });
        }
        frame
    }

    /// The message a stream begins with: the id of its starting point, so a client that
    /// disconnects before the first event still resumes exactly (EventSource records an `id`
    /// without dispatching an event).
    pub(super) fn opening(&self) -> Option<Bytes> {
        match self {
            Self::Topic { .. } => None,
            Self::All { after } => Some(Bytes::from(sse::id_only(&encode_cursor(after)))),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Topic { topic, after, .. } => format!("topic {topic:?} after seq {after}"),
            Self::All { after } => format!("every topic after {}", encode_cursor(after)),
        }
    }
}
