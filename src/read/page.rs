//! Pages of stored events, bounded in events and in bytes of JSON.
//!
//! A topic's page is in ascending `seq`, continued after the last `seq`. A page of every topic
//! goes partition by partition, each ordered by (`topic`, `seq`), continued from a
//! [`PageCursor`] (`<partition>.<seq>.<hex of topic>`). Either way, walking the pages returns
//! every stored event exactly once.

use crate::store::{PageLimit, Store, StoredEvent};

use super::{ReadError, check_not_ahead};

/// Memory one page may take before it is serialised: the rows (up to the byte bound plus one
/// event that did not fit, which is at most a body's size) and their JSON.
pub(crate) fn reservation(max_page_bytes: usize, max_body_bytes: usize) -> usize {
    2 * (max_page_bytes + max_body_bytes)
}

/// What to fetch for a page of `bounds`: one event more than it holds, to learn whether more
/// follow.
fn fetch(bounds: PageLimit) -> PageLimit {
    PageLimit {
        max_events: bounds.max_events + 1,
        ..bounds
    }
}

/// `topic`'s events after `seq` `after`, and the `seq` to continue after while more follow.
/// An empty page checks that `after` is not ahead of the topic (Guarantee 9).
pub(crate) async fn topic_page(
    store: &dyn Store,
    partition: usize,
    topic: &str,
    after: i64,
    bounds: PageLimit,
) -> Result<(Vec<StoredEvent>, Option<i64>), ReadError> {
    let mut events = store
        .topic_page(partition, topic, after, fetch(bounds))
        .await?;
    if events.is_empty() {
        check_not_ahead(store, partition, topic, after).await?;
    }
    let more = trim_page(&mut events, bounds);
    let next = more.then(|| events.last().map_or(after, |e| e.seq));
    Ok((events, next))
}

/// Every topic's events after `after` (from the start without), partition by partition, and
/// the cursor to continue from while more follow. `after` must name an existing partition.
pub(crate) async fn all_topics_page(
    store: &dyn Store,
    after: Option<&PageCursor>,
    bounds: PageLimit,
) -> Result<(Vec<StoredEvent>, Option<PageCursor>), ReadError> {
    let mut rows = fetch_across_partitions(store, after, fetch(bounds)).await?;
    if rows.is_empty()
        && let Some(cursor) = after
    {
        check_not_ahead(store, cursor.partition, &cursor.topic, cursor.seq).await?;
    }
    let more = trim_page(&mut rows, bounds);
    let next = more.then(|| {
        let (partition, last) = rows.last().expect("a page that continues holds events");
        PageCursor {
            partition: *partition,
            topic: last.topic.clone(),
            seq: last.seq,
        }
    });
    Ok((rows.into_iter().map(|(_, e)| e).collect(), next))
}

/// Events across partitions after `after`, tagged with their partition, fetched with the
/// same rule as one partition's page: up to `limit.max_events`, ending with the event that
/// reaches `limit.max_bytes`.
async fn fetch_across_partitions(
    store: &dyn Store,
    after: Option<&PageCursor>,
    limit: PageLimit,
) -> Result<Vec<(usize, StoredEvent)>, ReadError> {
    let start = after.map_or(0, |c| c.partition);
    let mut rows = Vec::new();
    let mut bytes = 0;
    for partition in start..store.partitions() {
        if rows.len() >= limit.max_events || bytes >= limit.max_bytes {
            break;
        }
        let position = after
            .filter(|c| c.partition == partition)
            .map(|c| (c.topic.as_str(), c.seq));
        let room = PageLimit {
            max_events: limit.max_events - rows.len(),
            max_bytes: limit.max_bytes - bytes,
        };
        let page = store.page(partition, position, room).await?;
        bytes += page.iter().map(StoredEvent::json_bytes).sum::<usize>();
        rows.extend(page.into_iter().map(|e| (partition, e)));
    }
    Ok(rows)
}

/// Cuts a page fetched with room for one event more than `bounds` (see [`fetch`]) to
/// what the client gets, and says whether more events may follow: the extra event exists, or
/// the byte bound ended the page (its last event, which crossed the bound, is left for the
/// next page unless it is the only one).
fn trim_page<T: AsPageEvent>(page: &mut Vec<T>, bounds: PageLimit) -> bool {
    let bytes: usize = page.iter().map(|e| e.event().json_bytes()).sum();
    let more = page.len() > bounds.max_events || bytes >= bounds.max_bytes;
    if page.len() > bounds.max_events || (bytes > bounds.max_bytes && page.len() > 1) {
        page.pop();
    }
    more
}

/// A page row: an event, alone or tagged with its partition.
trait AsPageEvent {
    fn event(&self) -> &StoredEvent;
}

impl AsPageEvent for StoredEvent {
    fn event(&self) -> &StoredEvent {
        self
    }
}

impl AsPageEvent for (usize, StoredEvent) {
    fn event(&self) -> &StoredEvent {
        &self.1
    }
}

/// Position after the last event of a page of every topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageCursor {
    pub(crate) partition: usize,
    pub(crate) topic: String,
    pub(crate) seq: i64,
}

impl PageCursor {
    pub(crate) fn encode(&self) -> String {
        let hex: String = self.topic.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}.{}.{hex}", self.partition, self.seq)
    }

    /// `None` when `raw` is not a cursor [`encode`](Self::encode) made.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, '.');
        let partition = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let hex = parts.next()?;
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()?;
        let topic = String::from_utf8(bytes).ok()?;
        Some(Self {
            partition,
            topic,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_any_topic() {
        for topic in ["orders", "a.b.c", "", "ünï cødé / ?&="] {
            let cursor = PageCursor {
                partition: 3,
                topic: topic.into(),
                seq: 42,
            };
            assert_eq!(PageCursor::parse(&cursor.encode()).unwrap(), cursor);
        }
        for bad in ["", "1", "1.2", "x.2.61", "1.2.6", "1.2.zz", "1.2.ff"] {
            assert!(PageCursor::parse(bad).is_none(), "{bad:?} must be refused");
        }
    }
}
