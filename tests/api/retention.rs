//! `--retention` and `--dedup-window`: pruned events leave every read, their keys stay
//! duplicates, `seq` and the lifetime counters go on; keys older than the window are forgotten.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{Backend, TestApp, event, on_every_store};
use crate::support::eventually::eventually;
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

on_every_store! {
    async fn pruned_events_leave_every_read_but_stay_duplicates_and_seq_goes_on(backend: Backend) {
        let app = TestApp::builder()
            .backend(backend)
            .config(|c| {
                c.store.retention = Some(Duration::from_secs(2));
                // The front cache remembers recent keys on its own; off, so only the store decides.
                c.ingest.cache_keys = 0;
            })
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

    async fn a_key_older_than_the_dedup_window_may_be_accepted_again_with_a_new_seq(backend: Backend) {
        let app = TestApp::builder()
            .backend(backend)
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

    /// With the front cache on (the default): a re-send is a duplicate within the window and is
    /// stored anew after it, never earlier (the cache held keys the store had forgotten: on a
    /// quiet service a re-send stayed a "duplicate" forever).
    async fn the_front_cache_honours_the_dedup_window(backend: Backend) {
        const WINDOW: Duration = Duration::from_secs(2);
        let app = TestApp::builder()
            .backend(backend)
            .config(|c| {
                c.store.retention = Some(Duration::from_secs(1));
                c.store.dedup_window = Some(WINDOW);
            })
            .spawn()
            .await;
        let first_sent = Instant::now();
        assert_eq!(app.publish_ok(&events("cw", 0..1)).await, (1, 0));
        assert_eq!(app.publish_ok(&events("cw", 0..1)).await, (0, 1), "a duplicate at once");
        let stored_anew = eventually(
            "a re-send after the window is stored anew",
            Duration::from_secs(60),
            || async {
                let (unique, _) = app.publish_ok(&events("cw", 0..1)).await;
                (unique == 1).then(Instant::now)
            },
        )
        .await;
        // The first commit came after `first_sent` and the re-send was decided before its
        // reply: so this is at least the time between the commit and that decision.
        assert!(
            stored_anew - first_sent >= WINDOW,
            "stored anew {:?} after the first publish, before the {WINDOW:?} window",
            stored_anew - first_sent
        );
    }
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

/// Two PostgreSQL replicas both run retention on one store: every partition is pruned by one
/// replica at a time, so each event is pruned exactly once (the topics' stored counts end at 0,
/// never below), and re-sends through either replica while pruning moves the keys stay
/// duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn replicas_prune_each_event_once_and_resends_during_pruning_stay_duplicates() {
    let test = "retention::replicas_prune_each_event_once";
    let Some(Backend::Postgres(server)) = Backend::postgres(test) else {
        return;
    };
    let store: uts_aggregator::store::Location = server.create_database().parse().unwrap();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = store.clone();
        apps.push(
            TestApp::builder()
                .store(store)
                .config(|c| {
                    c.store.retention = Some(Duration::from_secs(1));
                    c.ingest.cache_keys = 0;
                })
                .spawn()
                .await,
        );
    }
    const TOPICS: usize = 8;
    const PER_TOPIC: usize = 250;
    let batch = |t: usize| events(&format!("t{t}"), 0..PER_TOPIC);
    for t in 0..TOPICS {
        assert_eq!(
            apps[t % 2].publish_ok(&batch(t)).await,
            (PER_TOPIC as u64, 0)
        );
    }
    // Re-send everything, alternating replicas, until every event is pruned.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rounds = 0;
    loop {
        for t in 0..TOPICS {
            let resent = apps[(t + rounds) % 2].publish_ok(&batch(t)).await;
            assert_eq!(resent, (0, PER_TOPIC as u64), "t{t}, round {rounds}");
        }
        rounds += 1;
        let mut stored = 0;
        for t in 0..TOPICS {
            stored += topic(&apps[rounds % 2], &format!("t{t}")).await["events"]
                .as_u64()
                .unwrap();
        }
        if stored == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{stored} events still stored");
    }
    for app in &apps {
        let stats = app.stats().await;
        assert_eq!(stats["unique_processed"], (TOPICS * PER_TOPIC) as u64);
        for t in 0..TOPICS {
            let listed = topic(app, &format!("t{t}")).await;
            assert_eq!(listed["events"], 0, "pruned exactly once: {listed}");
            assert_eq!(listed["last_seq"], PER_TOPIC as u64);
        }
        assert_eq!(json(app, "/events?limit=100").await, Value::Array(vec![]));
    }
    // The numbering goes on after the pruned range, through either replica.
    assert_eq!(apps[1].publish_ok(&events("t0", 1000..1001)).await, (1, 0));
    let page = json(&apps[0], "/events?topic=t0").await;
    assert_eq!(page[0]["seq"], PER_TOPIC as u64 + 1, "{page}");
}
