//! `--retention` and `--dedup-window`: pruned events leave every read, their keys stay
//! duplicates, `seq` and the lifetime counters go on; keys older than the window are forgotten.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{TestApp, event};
use crate::support::process::start_fails;

async fn json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The topic's entry in `/topics`.
async fn topic(app: &TestApp, name: &str) -> Value {
    let topics = json(app, "/topics").await;
    topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits (at most 15 s) until `/topics` shows `events` for `name`.
async fn wait_for_events(app: &TestApp, name: &str, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while topic(app, name).await["events"] != events {
        assert!(
            Instant::now() < deadline,
            "{name}: {}",
            topic(app, name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn events(topic: &str, ids: std::ops::Range<usize>) -> Value {
    Value::Array(ids.map(|i| event(topic, &format!("e-{i}"))).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_events_leave_every_read_but_stay_duplicates_and_seq_goes_on() {
    let app = TestApp::builder()
        .config(|c| c.store.retention = Some(Duration::from_secs(2)))
        .spawn()
        .await;
    app.publish_ok(&events("old", 0..5)).await;
    wait_for_events(&app, "old", 0).await;
    let listed = topic(&app, "old").await;
    assert_eq!(listed["last_seq"], 5, "last_seq is unchanged: {listed}");
    assert_eq!(json(&app, "/events?topic=old").await, Value::Array(vec![]));
    let stats = json(&app, "/stats").await;
    assert_eq!(
        stats["unique_processed"], 5,
        "lifetime counters are unchanged"
    );

    // A re-send of a pruned event is still a duplicate.
    assert_eq!(app.publish_ok(&events("old", 0..5)).await, (0, 5));
    // A new one continues the numbering; a reader after seq 2 notices the gap (first seq 6).
    assert_eq!(app.publish_ok(&events("old", 5..6)).await, (1, 0));
    let page = json(&app, "/events?topic=old&after=2").await;
    let seqs: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [6]);
    let all = json(&app, "/events?limit=100").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    // The oldest retained commit time shows once the next commit-time mark covers it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains("aggregator_oldest_retained_commit_timestamp_seconds ") {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        metrics.contains("aggregator_events_stored 1\n"),
        "{metrics}"
    );
    assert_eq!(topic(&app, "old").await["events"], 1);

    // Streams start at the first retained event too.
    let response = app.get("/events/stream?topic=old").await;
    let mut response = response;
    let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.starts_with("id: 6\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_older_than_the_dedup_window_may_be_accepted_again_with_a_new_seq() {
    let app = TestApp::builder()
        .config(|c| {
            c.store.retention = Some(Duration::from_secs(1));
            c.store.dedup_window = Some(Duration::from_secs(2));
            // The front cache remembers recent keys on its own; off, so only the store decides.
            c.ingest.cache_keys = 0;
        })
        .spawn()
        .await;
    app.publish_ok(&events("w", 0..3)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (unique, _) = app.publish_ok(&events("w", 0..1)).await;
        if unique == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never forgotten");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = json(&app, "/events?topic=w").await;
    assert_eq!(page[0]["event_id"], "e-0");
    assert_eq!(page[0]["seq"], 4, "accepted again with a new seq");
}

#[test]
fn retention_settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_uts-aggregator"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args);
        start_fails(&mut command)
    };
    let text = start(&["--retention", "2h", "--dedup-window", "1h"]);
    assert!(text.contains("shorter than --retention"), "{text}");
    let text = start(&["--dedup-window", "1h"]);
    assert!(text.contains("--dedup-window needs --retention"), "{text}");
    let text = start(&["--retention", "2 weeks"]);
    assert!(text.contains("not a duration"), "{text}");
}
