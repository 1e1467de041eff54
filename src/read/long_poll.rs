//! Long polls (`GET /events?topic=T&wait=S`): waiting for a topic's next event without reading
//! a page or holding page memory while waiting.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ingest::PartitionHandle;
use crate::store::{PageLimit, Store};

use super::{ReadError, check_not_ahead};

/// Returns `true` once `topic` (owned by `partition`, whose handle is `handle`) has an event
/// after `after`; `false` when `wait` has passed or shutdown began with none (the caller
/// answers `[]` without reading again). Only commits of `topic` wake it (see
/// `ingest::TopicWait`), so idle polls of a quiet topic cost a busy topic on the same
/// partition nothing.
pub(crate) async fn wait_for_event(
    store: &dyn Store,
    handle: &PartitionHandle,
    partition: usize,
    topic: &str,
    after: i64,
    wait: Duration,
    shutdown: CancellationToken,
) -> Result<bool, ReadError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut commits = handle.topic_commits(topic);
    let probe = PageLimit {
        max_events: 1,
        max_bytes: 1,
    };
    let mut first = true;
    loop {
        commits.mark_seen();
        let found = store.topic_page(partition, topic, after, probe).await?;
        if !found.is_empty() {
            return Ok(true);
        }
        // Only a poll that would wait can be waiting for a cursor from the future.
        if std::mem::take(&mut first) {
            check_not_ahead(store, partition, topic, after).await?;
        }
        tokio::select! {
            () = commits.changed() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(false),
            () = shutdown.cancelled() => return Ok(false),
        }
    }
}
