//! A reusable crash-test harness: a multi-topic publish stream against the real binary, and
//! the checks that must hold after every restart, whatever moment the process died at.
//! Used by `restart.rs` (one SIGTERM, one SIGKILL) and by the repeated-kill test below.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{BinaryApp, event};

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

async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: String) -> T {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Every event behind `first`, following `Link: <...>; rel="next"`.
async fn all_pages(client: &reqwest::Client, first: &str) -> Vec<Value> {
    let base = first.split("/events").next().unwrap().to_string();
    let mut all = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(url) = next {
        let response = client.get(&url).send().await.unwrap();
        next = response
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| {
                l.strip_prefix('<')?
                    .split('>')
                    .next()
                    .map(|p| format!("{base}{p}"))
            });
        let page: Vec<Value> = response.json().await.unwrap();
        all.extend(page);
    }
    all
}

pub(crate) async fn stats(client: &reqwest::Client, address: &str) -> Value {
    get_json(client, format!("{address}/stats")).await
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
        let events = all_pages(
            &client,
            &format!("{address}/events?topic={topic}&limit=10000"),
        )
        .await;
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

/// Kills the real binary with SIGKILL at random moments of a continuous 3-publisher,
/// 5-topic load, 20 times in a row on the same data dir, checking everything after each
/// restart. The seed is printed; `CRASH_SEED=<seed>` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kill_9s_at_random_moments_lose_nothing() {
    const KILLS: usize = 20;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test seed {seed} (replay with CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    let mut sent_before: HashSet<(String, String)> = HashSet::new();
    for cycle in 0..=KILLS {
        let app = BinaryApp::start(dir.path());
        if cycle > 0 {
            let acked_now = acked.lock().unwrap().clone();
            check_after_restart(&app.address, &acked_now, &sent_before).await;
            // The re-send stored whatever was missing: all of it is acknowledged now.
            acked.lock().unwrap().extend(sent_before.drain());
        }
        if cycle == KILLS {
            break;
        }
        let sent: Acked = Arc::default();
        let publishers =
            spawn_publishers(std::slice::from_ref(&app.address), 3, cycle, &acked, &sent);
        tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
        app.signal(Signal::SIGKILL);
        let status = tokio::task::spawn_blocking(move || app.wait(Duration::from_secs(10)))
            .await
            .unwrap();
        assert!(status.code().is_none(), "killed by the signal, not exited");
        for p in publishers {
            p.await.unwrap();
        }
        sent_before = sent.lock().unwrap().clone();
    }
    eprintln!(
        "{KILLS} kills survived; {} acknowledged events checked after the last restart",
        acked.lock().unwrap().len()
    );
}
