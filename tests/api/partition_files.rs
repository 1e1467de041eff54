//! No silent loss: a partition database that is missing, emptied or replaced is refused at start
//! with a message naming it, and one that vanishes while the service runs turns readiness red
//! and makes its partition answer 503, never 200 into an unlinked file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use uts_aggregator::ingest::partition_of;

use crate::support::app::event;
use crate::support::process::{BinaryApp, start_fails};

fn start_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_uts-aggregator"));
    command
        .args(["--listen", "127.0.0.1:0", "--partitions", "3", "--data-dir"])
        .arg(dir);
    command
}

fn remove_database(dir: &Path, partition: usize) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("partition-{partition:03}.db{suffix}")));
    }
}

/// A data dir with one acknowledged event in every partition, service stopped.
async fn populated_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::start(dir.path());
    let client = reqwest::Client::new();
    for topic in ["a", "b", "c", "d", "e", "f"] {
        let reply = client
            .post(format!("{}/publish", app.address))
            .json(&event(topic, "1"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    app.signal(nix::sys::signal::Signal::SIGTERM);
    app.wait(Duration::from_secs(10));
    dir
}

#[tokio::test]
async fn a_deleted_partition_database_is_refused_at_start_naming_it() {
    let dir = populated_dir().await;
    remove_database(dir.path(), 0);
    let text = start_fails(&mut start_command(dir.path()));
    assert!(text.contains("partition-000.db is missing"), "{text}");
    assert!(
        text.contains("aggregator.json records it with identity"),
        "{text}"
    );
    assert!(
        !dir.path().join("partition-000.db").exists(),
        "never recreated empty"
    );
}

#[tokio::test]
async fn an_emptied_or_replaced_partition_database_is_refused_at_start() {
    let dir = populated_dir().await;
    let other = populated_dir().await;
    // Replaced by another data dir's database (another identity).
    remove_database(dir.path(), 1);
    std::fs::copy(
        other.path().join("partition-001.db"),
        dir.path().join("partition-001.db"),
    )
    .unwrap();
    let text = start_fails(&mut start_command(dir.path()));
    assert!(text.contains("partition-001.db holds identity"), "{text}");
    // Emptied: a zero-byte file where the database was.
    remove_database(dir.path(), 1);
    std::fs::write(dir.path().join("partition-001.db"), b"").unwrap();
    let text = start_fails(&mut start_command(dir.path()));
    assert!(text.contains("partition-001.db is empty"), "{text}");
}

#[tokio::test]
async fn a_data_dir_from_before_identities_is_upgraded_but_must_be_complete() {
    let dir = populated_dir().await;
    // Make it look like format 1: no identities in the manifest or the databases, and schema
    // version 2: no positions or retention state either.
    std::fs::write(
        dir.path().join("aggregator.json"),
        r#"{"format": 1, "partitions": 3}"#,
    )
    .unwrap();
    for p in 0..3 {
        let conn =
            rusqlite::Connection::open(dir.path().join(format!("partition-{p:03}.db"))).unwrap();
        conn.execute_batch(
            "DROP TABLE meta; DROP INDEX events_position; ALTER TABLE events DROP COLUMN pos;
             ALTER TABLE counters DROP COLUMN last_pos; DROP TABLE commit_marks;
             ALTER TABLE counters DROP COLUMN pruned_pos;
             ALTER TABLE counters DROP COLUMN forgotten_pos;
             ALTER TABLE counters DROP COLUMN pruned_events; DROP TABLE kept_keys;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let upgraded = dir.path().join("upgraded");
    copy_flat(dir.path(), &upgraded);
    let app = BinaryApp::start(&upgraded);
    let stats: Value = reqwest::get(format!("{}/stats", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["unique_processed"], 6,
        "history kept across the upgrade"
    );
    // The upgrade numbered the stored events: the stream of every topic delivers each once.
    let mut stream = reqwest::get(format!("{}/events/stream", app.address))
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text.matches("data: ").count() < 6 {
        assert!(Instant::now() < deadline, "stream stalled: {text}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    for topic in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(
            text.matches(&format!("\"topic\":\"{topic}\"")).count(),
            1,
            "{text}"
        );
    }
    drop(app);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(upgraded.join("aggregator.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], 2);
    assert_eq!(manifest["databases"].as_array().unwrap().len(), 3);
    // A format-1 dir with a database missing is refused as well.
    remove_database(dir.path(), 2);
    let text = start_fails(&mut start_command(dir.path()));
    assert!(text.contains("partition-002.db is missing"), "{text}");
}

fn copy_flat(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_while_running_turns_readiness_red_and_its_publishes_503() {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::start(dir.path());
    let client = reqwest::Client::new();
    let lost_topic = (0..)
        .map(|i| format!("lost-{i}"))
        .find(|t| partition_of(t, 3) == 0)
        .unwrap();
    let kept_topic = (0..)
        .map(|i| format!("kept-{i}"))
        .find(|t| partition_of(t, 3) == 1)
        .unwrap();
    let publish = |topic: String, id: String| {
        let client = client.clone();
        let url = format!("{}/publish", app.address);
        async move {
            let reply = client
                .post(url)
                .json(&event(&topic, &id))
                .send()
                .await
                .unwrap();
            let status = reply.status().as_u16();
            (status, reply.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(publish(lost_topic.clone(), "0".into()).await.0, 200);
    remove_database(dir.path(), 0);
    // Readiness turns red without any publish (the idle check runs every second).
    let started = Instant::now();
    loop {
        let ready = client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        if ready.status() == 503 {
            let body: Value = ready.json().await.unwrap();
            assert!(
                body["reasons"].to_string().contains("partition 0"),
                "{body}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "readiness still green"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 1..20 {
        let (status, body) = publish(lost_topic.clone(), i.to_string()).await;
        assert_eq!(status, 503, "never a 200 into the unlinked file: {body}");
        assert!(body["error"].is_string());
    }
    let (status, _) = publish(kept_topic, "1".into()).await;
    assert_eq!(status, 200, "other partitions keep working");
    // Reads that need the lost file say the store is unavailable (before: a bare 500).
    let stats = client
        .get(format!("{}/stats", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 503);
    assert!(stats.headers().contains_key("retry-after"));
    let body: Value = stats.json().await.unwrap();
    assert_eq!(
        body["error"], "storage unavailable for reads, retry later",
        "{body}"
    );
    assert!(
        !dir.path().join("partition-000.db").exists(),
        "not recreated"
    );
}
