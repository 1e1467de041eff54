//! Shared loads and checks: the crash-test publish stream against the real binary, the checks
//! that must hold after every restart (whatever moment the process died at), and overlapping
//! concurrent publishers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::app::{TestApp, event};
use super::pages::walk_pages;

pub(crate) type Acked = Arc<Mutex<HashSet<(String, String)>>>;

/// Publishes batches of new events (plus re-sends of the previous batch) until the server stops
/// answering; records every event of every 200 reply in `acked`.
pub(crate) async fn stream_publishes(
    address: String,
    run: usize,
    publisher: usize,
    acked: Acked,
    sent: Acked,
) {
    let client = reqwest::Client::new();
    let mut previous: Vec<Value> = Vec::new();
    for round in 0.. {
        let mut batch: Vec<Value> = (0..20)
            .map(|i| {
                event(
                    &format!("topic-{}", (publisher + i) % 5),
                    &format!("c{run}-p{publisher}-r{round}-{i}"),
                )
            })
            .collect();
        batch.extend(previous.iter().take(5).cloned());
        let keys: Vec<(String, String)> = batch
            .iter()
            .map(|e| {
                (
                    e["topic"].as_str().unwrap().into(),
                    e["event_id"].as_str().unwrap().into(),
                )
            })
            .collect();
        sent.lock().unwrap().extend(keys.iter().cloned());
        let reply = client
            .post(format!("{address}/publish"))
            .json(&batch)
            .send()
            .await;
        match reply {
            Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(keys),
            Ok(r) if r.status() == 503 => {}
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(_) => return, // the server is gone
        }
        previous = batch;
    }
}

/// Starts `count` [`stream_publishes`] of cycle `run`, publisher `p` sending to
/// `addresses[p % addresses.len()]`.
pub(crate) fn spawn_publishers(
    addresses: &[String],
    count: usize,
    run: usize,
    acked: &Acked,
    sent: &Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|p| {
            tokio::spawn(stream_publishes(
                addresses[p % addresses.len()].clone(),
                run,
                p,
                acked.clone(),
                sent.clone(),
            ))
        })
        .collect()
}

/// `GET {address}/stats` as JSON.
pub(crate) async fn stats(client: &reqwest::Client, address: &str) -> Value {
    let response = client
        .get(format!("{address}/stats"))
        .send()
        .await
        .expect("GET /stats");
    assert_eq!(response.status(), 200, "GET /stats");
    response.json().await.expect("/stats JSON")
}

/// After a restart: every acked event is stored exactly once, the counters add up and match
/// the database, per-topic seq is 1..=n, and re-sending everything sent yields only duplicates
/// for the acked events.
pub(crate) async fn check_after_restart(
    address: &str,
    acked: &HashSet<(String, String)>,
    sent: &HashSet<(String, String)>,
) {
    let client = reqwest::Client::new();
    let before = stats(&client, address).await;
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        n(&before, "received"),
        n(&before, "unique_processed") + n(&before, "duplicate_dropped")
    );

    let mut stored = HashSet::new();
    for topic in before["topics"].as_array().unwrap() {
        let topic = topic.as_str().unwrap();
        let first = format!("/events?topic={topic}&limit=10000");
        let events = walk_pages(&client, address, &first).await;
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "gapless seq in {topic}"
        );
        for e in events {
            assert!(
                stored.insert((
                    topic.to_string(),
                    e["event_id"].as_str().unwrap().to_string()
                )),
                "stored twice"
            );
        }
    }
    assert_eq!(
        stored.len() as u64,
        n(&before, "unique_processed"),
        "counter equals the database"
    );
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");

    let all: Vec<Value> = sent.iter().map(|(t, id)| event(t, id)).collect();
    for chunk in all.chunks(500) {
        let reply: Value = client
            .post(format!("{address}/publish"))
            .json(&chunk)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let new_ones = reply["unique_processed"].as_u64().unwrap();
        let unacked_in_chunk = chunk
            .iter()
            .filter(|e| {
                !acked.contains(&(
                    e["topic"].as_str().unwrap().into(),
                    e["event_id"].as_str().unwrap().into(),
                ))
            })
            .count() as u64;
        assert!(
            new_ones <= unacked_in_chunk,
            "an acknowledged event was processed twice"
        );
    }
}

/// `publishers` concurrent publishers, publisher `p` sending to `apps[p % apps.len()]` ids
/// p*50 .. p*50+200 on 4 topics in batches of `batch` (neighbours share 150 ids: 8
/// publishers send 1600 events, 550 distinct). Returns the summed (unique, duplicate) replies.
pub(crate) async fn publish_overlapping(
    apps: &[Arc<TestApp>],
    publishers: usize,
    batch: usize,
) -> (u64, u64) {
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let app = apps[p % apps.len()].clone();
            tokio::spawn(async move {
                let events: Vec<Value> = (p * 50..p * 50 + 200)
                    .map(|i| event(&format!("t{}", i % 4), &format!("id-{i}")))
                    .collect();
                let mut totals = (0, 0);
                for chunk in events.chunks(batch) {
                    let (u, d) = app.publish_ok(&Value::Array(chunk.to_vec())).await;
                    totals = (totals.0 + u, totals.1 + d);
                }
                totals
            })
        })
        .collect();
    let (mut unique, mut duplicate) = (0, 0);
    for task in tasks {
        let (u, d) = task.await.unwrap();
        unique += u;
        duplicate += d;
    }
    (unique, duplicate)
}
