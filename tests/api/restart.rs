//! The real binary, restarted: SIGTERM drains and keeps everything; `kill -9` in the middle of
//! a publish stream loses no acknowledged event and leaves the counters consistent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{BinaryApp, event};

type Acked = Arc<Mutex<HashSet<(String, String)>>>;

/// Publishes batches of new events (plus re-sends of the previous batch) until the server stops
/// answering; records every event of every 200 reply in `acked`.
async fn stream_publishes(address: String, publisher: usize, acked: Acked, sent: Acked) {
    let client = reqwest::Client::new();
    let mut previous: Vec<Value> = Vec::new();
    for round in 0.. {
        let mut batch: Vec<Value> = (0..20)
            .map(|i| {
                event(
                    &format!("topic-{}", (publisher + i) % 5),
                    &format!("p{publisher}-r{round}-{i}"),
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

async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: String) -> T {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn stats(client: &reqwest::Client, address: &str) -> Value {
    get_json(client, format!("{address}/stats")).await
}

/// After a restart: every acked event is stored exactly once, the counters add up and match
/// the database, per-topic seq is 1..=n, and re-sending everything sent yields only duplicates
/// for the acked events.
async fn check_after_restart(
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
        let events: Vec<Value> = get_json(&client, format!("{address}/events?topic={topic}")).await;
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

async fn run_stream_then(signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::start(dir.path());
    let acked: Acked = Arc::default();
    let sent: Acked = Arc::default();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            tokio::spawn(stream_publishes(
                app.address.clone(),
                p,
                acked.clone(),
                sent.clone(),
            ))
        })
        .collect();
    // Let the stream run until a good number of batches are acknowledged.
    while acked.lock().unwrap().len() < 2_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.signal(signal);
    let status = tokio::task::spawn_blocking(move || app.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    for p in publishers {
        p.await.unwrap();
    }
    match signal {
        Signal::SIGTERM => assert_eq!(status.code(), Some(0), "graceful shutdown exits 0"),
        _ => assert!(status.code().is_none(), "killed by a signal"),
    }

    let app = BinaryApp::start(dir.path());
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    check_after_restart(&app.address, &acked, &sent).await;
    if signal == Signal::SIGTERM {
        // A drain commits everything that was accepted: nothing sent is missing except
        // requests refused with 503 during shutdown.
        let stats = stats(&reqwest::Client::new(), &app.address).await;
        assert!(stats["unique_processed"].as_u64().unwrap() >= acked.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_exits_0_and_restart_keeps_everything() {
    run_stream_then(Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_event() {
    run_stream_then(Signal::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_another_partition_count_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    drop(BinaryApp::start(dir.path())); // created with 3 partitions, then killed
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
        .args(["--listen", "127.0.0.1:0", "--partitions", "5", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("created with 3 partitions, but 5 were requested"),
        "{text}"
    );
}
