//! The `Store` interface's contract, checked the same way on both engines: every check goes
//! through `store::open`, `Store` and `PartitionWriter` only, with no HTTP and no engine type.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use uts_aggregator::event::{Event, parse_publish_body};
use uts_aggregator::ingest::partition_of;
use uts_aggregator::store::{
    self, CommitBatch, Durability, Location, OpenOptions, PageLimit, Store, Totals,
};

use crate::support::app::on_every_store;

const PARTITIONS: usize = 3;
const ANY: PageLimit = PageLimit {
    max_events: 10_000,
    max_bytes: usize::MAX,
};

fn options(location: Location, data_dir: &Path) -> OpenOptions {
    OpenOptions {
        location,
        data_dir: data_dir.to_path_buf(),
        partitions: Some(PARTITIONS),
        default_partitions: PARTITIONS,
        durability: Durability::Process,
        page_cache_kib_total: 4096,
        pool_size: 4,
        retention: None,
    }
}

fn events(list: &[(&str, &str)]) -> Vec<Event> {
    let body: Vec<_> = list
        .iter()
        .map(|(topic, id)| {
            json!({
                "topic": topic, "event_id": id, "timestamp": "2025-10-24T00:00:00Z",
                "source": "conformance", "payload": {"id": id, "text": "é\u{0}✓", "n": [1, 2.5]},
            })
        })
        .collect();
    parse_publish_body(&serde_json::to_vec(&body).unwrap(), 10_000).unwrap()
}

/// Commits `list` (all candidates) through `partition`'s writer; returns the new/duplicate flags.
async fn commit(store: &Arc<dyn Store>, partition: usize, list: &[(&str, &str)]) -> Vec<bool> {
    let events: Arc<[Event]> = events(list).into();
    let mut batch = CommitBatch::default();
    batch.push(events.clone(), events.iter().map(|_| true));
    let mut writer = store.open_writer(partition).await.unwrap();
    writer.commit_batch(&batch).await.unwrap()
}

fn partition(topic: &str) -> usize {
    partition_of(topic, PARTITIONS)
}

on_every_store! {
/// A key is new once and a duplicate ever after, within a batch, across batches and across a
/// reopen; the writer's totals count every event of a commit and survive the reopen.
async fn a_key_is_stored_once_and_the_totals_add_up(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let location = backend.new_store();
    let store = store::open(&options(location.clone(), dir.path())).await.unwrap();
    assert_eq!(store.partitions(), PARTITIONS);
    let p = partition("orders");

    let first = commit(&store, p, &[("orders", "a"), ("orders", "b"), ("orders", "a")]).await;
    assert_eq!(first, [true, true, false]);
    let again = commit(&store, p, &[("orders", "b"), ("orders", "c")]).await;
    assert_eq!(again, [false, true]);
    let writer = store.open_writer(p).await.unwrap();
    let expected = Totals { received: 5, unique_processed: 3, duplicate_dropped: 2 };
    assert_eq!(writer.totals(), expected);
    drop(writer);
    drop(store);

    let reopened = store::open(&options(location, dir.path())).await.unwrap();
    assert_eq!(commit(&reopened, p, &[("orders", "a"), ("orders", "d")]).await, [false, true]);
    let writer = reopened.open_writer(p).await.unwrap();
    let expected = Totals { received: 7, unique_processed: 4, duplicate_dropped: 3 };
    assert_eq!(writer.totals(), expected);
}

/// A topic's events come back in `seq` order from 1, losslessly, from any `after`, and a page
/// stops at its event count or at the event that reaches its byte bound (never empty).
async fn topic_pages_are_ordered_lossless_and_bounded(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&options(backend.new_store(), dir.path())).await.unwrap();
    let p = partition("t\u{0}nul");
    let ids: Vec<String> = (0..10).map(|i| format!("id-{i}\u{0}x")).collect();
    let list: Vec<(&str, &str)> = ids.iter().map(|id| ("t\u{0}nul", id.as_str())).collect();
    commit(&store, p, &list).await;

    let all = store.topic_page(p, "t\u{0}nul", 0, ANY).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(all.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ids);
    let payload: serde_json::Value = serde_json::from_str(all[3].payload.get()).unwrap();
    assert_eq!(payload, json!({"id": ids[3], "text": "é\u{0}✓", "n": [1, 2.5]}));
    assert_eq!(all[3].timestamp, "2025-10-24T00:00:00Z");

    let after = store.topic_page(p, "t\u{0}nul", 7, ANY).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9, 10]);
    let three = PageLimit { max_events: 3, max_bytes: usize::MAX };
    assert_eq!(store.topic_page(p, "t\u{0}nul", 0, three).await.unwrap().len(), 3);
    let tiny = PageLimit { max_events: 10, max_bytes: 1 };
    assert_eq!(store.topic_page(p, "t\u{0}nul", 0, tiny).await.unwrap().len(), 1);
    assert!(store.topic_page(p, "missing", 0, ANY).await.unwrap().is_empty());
}

/// A partition's page is ordered by (topic, seq) and resumes after any (topic, seq).
async fn partition_pages_resume_after_topic_and_seq(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&options(backend.new_store(), dir.path())).await.unwrap();
    // Topics of partition 0 only.
    let topics: Vec<String> =
        (0..).map(|i| format!("topic-{i}")).filter(|t| partition(t) == 0).take(3).collect();
    for topic in &topics {
        commit(&store, 0, &[(topic, "1"), (topic, "2")]).await;
    }
    let keys = |page: Vec<store::StoredEvent>| -> Vec<(String, i64)> {
        page.into_iter().map(|e| (e.topic, e.seq)).collect()
    };
    let mut sorted = topics.clone();
    sorted.sort();
    let expected: Vec<(String, i64)> =
        sorted.iter().flat_map(|t| [(t.clone(), 1), (t.clone(), 2)]).collect();
    assert_eq!(keys(store.page(0, None, ANY).await.unwrap()), expected);
    let resumed = store.page(0, Some((&sorted[0], 1)), ANY).await.unwrap();
    assert_eq!(keys(resumed), expected[1..].to_vec());
}

/// Positions follow a partition's commit order across topics: duplicates take none, a page
/// resumes after any position, a reopened writer continues after the highest given, and
/// `last_positions` names it.
async fn positions_follow_commit_order_and_are_never_reused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let location = backend.new_store();
    let store = store::open(&options(location.clone(), dir.path())).await.unwrap();
    let topics: Vec<String> =
        (0..).map(|i| format!("pos-{i}")).filter(|t| partition(t) == 1).take(2).collect();
    let (a, b) = (topics[0].as_str(), topics[1].as_str());
    commit(&store, 1, &[(b, "1"), (a, "1"), (b, "2")]).await;
    commit(&store, 1, &[(a, "1"), (b, "2")]).await; // duplicates only
    commit(&store, 1, &[(a, "2"), (b, "1"), (b, "3")]).await;
    let order = |page: Vec<store::StoredEvent>| -> Vec<(String, i64, i64)> {
        page.into_iter().map(|e| (e.topic, e.seq, e.position)).collect()
    };
    let all = order(store.position_page(1, 0, ANY).await.unwrap());
    let expected = vec![
        (b.to_string(), 1, 1),
        (a.to_string(), 1, 2),
        (b.to_string(), 2, 3),
        (a.to_string(), 2, 4),
        (b.to_string(), 3, 5),
    ];
    assert_eq!(all, expected);
    assert_eq!(order(store.position_page(1, 3, ANY).await.unwrap()), expected[3..].to_vec());
    let two = PageLimit { max_events: 2, max_bytes: usize::MAX };
    assert_eq!(order(store.position_page(1, 0, two).await.unwrap()), expected[..2].to_vec());
    assert_eq!(store.last_positions().await.unwrap(), [0, 5, 0]);
    drop(store);

    let reopened = store::open(&options(location, dir.path())).await.unwrap();
    commit(&reopened, 1, &[(a, "3")]).await;
    let after = order(reopened.position_page(1, 5, ANY).await.unwrap());
    assert_eq!(after, [(a.to_string(), 3, 6)]);
    assert_eq!(reopened.last_positions().await.unwrap(), [0, 6, 0]);
}

/// Topics list in byte order with their event counts and last seq, resumable, and counted.
async fn topics_list_in_byte_order_with_counts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&options(backend.new_store(), dir.path())).await.unwrap();
    for (topic, n) in [("b", 2), ("a", 1), ("Z", 3)] {
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let list: Vec<(&str, &str)> = ids.iter().map(|id| (topic, id.as_str())).collect();
        commit(&store, partition(topic), &list).await;
    }
    let page = store.topics_page(None, 10).await.unwrap();
    let listed: Vec<(&str, u64, i64)> =
        page.iter().map(|t| (t.topic.as_str(), t.events, t.last_seq)).collect();
    assert_eq!(listed, [("Z", 3, 3), ("a", 1, 1), ("b", 2, 2)]);
    let after = store.topics_page(Some("Z"), 1).await.unwrap();
    assert_eq!(after.iter().map(|t| t.topic.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(store.topic_count().await.unwrap(), 3);
}
}
