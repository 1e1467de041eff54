//! Store faults and worker panics: each gives a clear error (503 with a JSON reason,
//! `/readyz` 503, a log line), loses no acknowledged event, and recovers when the fault is gone.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uts_aggregator::ingest::partition_of;

use crate::support::app::{TestApp, event};
use crate::support::fault_store::PanicOnTopic;
use crate::support::process::{BinaryApp, start_fails};
use crate::support::workload::check_after_restart;

/// A topic other than `topic` that lives on the same partition (of 3).
fn neighbour_of(topic: &str) -> String {
    (0..)
        .map(|i| format!("neighbour-{i}"))
        .find(|t| partition_of(t, 3) == partition_of(topic, 3))
        .expect("some topic shares the partition")
}

async fn wait_ready(app: &TestApp, ready: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/readyz").await;
        let is_ready = response.status() == 200;
        let body: Value = response.json().await.unwrap();
        if is_ready == ready {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never became {ready}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_panic_answers_503_and_the_partition_keeps_working() {
    let app = TestApp::builder()
        .wrap_store(PanicOnTopic::wrap("boom"))
        .spawn()
        .await;
    let neighbour = neighbour_of("boom");
    app.publish_ok(&json!([
        event(&neighbour, "before-1"),
        event(&neighbour, "before-2")
    ]))
    .await;

    let (status, body) = app.publish(&event("boom", "1")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string());

    // The same partition takes the next publish: the worker reopened its store.
    assert_eq!(app.publish_ok(&event(&neighbour, "after")).await, (1, 0));
    assert_eq!(
        app.publish_ok(&event(&neighbour, "before-1")).await,
        (0, 1),
        "history intact"
    );
    wait_ready(&app, true).await;
    let stats = app.stats().await;
    assert_eq!(
        stats["unique_processed"], 3,
        "the panicked batch stored nothing: {stats}"
    );
    assert_eq!(stats["received"], 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_gives_503_then_recovers() {
    let app = TestApp::spawn().await;
    app.publish_ok(&event("locked", "1")).await;
    let db = app
        .data_dir
        .join(format!("partition-{:03}.db", partition_of("locked", 3)));

    // Another process's connection takes the write lock and keeps it.
    let intruder = rusqlite::Connection::open(&db).unwrap();
    intruder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, body) = app.publish(&event("locked", "2")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "storage unavailable");
    let not_ready = wait_ready(&app, false).await;
    assert!(
        not_ready["reasons"]
            .to_string()
            .contains("store not writable"),
        "{not_ready}"
    );

    // Lock released: the worker's probe turns readiness green without any publish.
    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    wait_ready(&app, true).await;
    assert_eq!(
        app.publish_ok(&json!([event("locked", "1"), event("locked", "2")]))
            .await,
        (1, 1)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_corrupted_database_file_at_start_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    drop(BinaryApp::start(dir.path()));
    let victim = dir.path().join("partition-001.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("partition-001.db{suffix}")));
    }
    std::fs::write(&victim, vec![0x5a; 8192]).unwrap();
    let text = start_fails(
        Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path()),
    );
    assert!(text.contains("partition-001.db"), "names the file: {text}");
    assert!(text.contains("not a database"), "names the cause: {text}");
}

/// Disk full, simulated without privileges: the service runs under a file-size limit
/// (`ulimit -f`, with SIGXFSZ ignored so writes fail with EFBIG instead of killing it), so
/// its WAL cannot grow past a few MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_503_and_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    drop(BinaryApp::start(dir.path())); // create the store without a limit
    let app = BinaryApp::start_with(dir.path(), Some(4096));
    let client = reqwest::Client::new();
    let mut acked = std::collections::HashSet::new();
    let mut refused = None;
    for round in 0..400 {
        let batch: Vec<Value> = (0..50)
            .map(|i| {
                let mut e = event(&format!("full-{}", i % 3), &format!("r{round}-{i}"));
                e["payload"] = json!({"blob": "x".repeat(2000)});
                e
            })
            .collect();
        let response = client
            .post(format!("{}/publish", app.address))
            .json(&batch)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => acked.extend(batch.iter().map(|e| {
                (
                    e["topic"].as_str().unwrap().to_string(),
                    e["event_id"].as_str().unwrap().to_string(),
                )
            })),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refused = Some(response.json::<Value>().await.unwrap());
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("the file-size limit was reached");
    assert_eq!(refused["error"], "storage unavailable", "{refused}");
    let ready = client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "readiness is red right after the failed commit"
    );
    drop(app);

    // The fault removed (no limit): everything acknowledged is there, counters consistent.
    let app = BinaryApp::start(dir.path());
    check_after_restart(&app.address, &acked, &acked).await;
    assert!(!acked.is_empty());
}

/// A data dir the service cannot write at start: simulated with a zero file-size limit,
/// because the tests run as root, for whom a read-only mode does not apply (and a read-only
/// mount needs privileges). Every write fails, as on a read-only filesystem.
#[tokio::test]
async fn an_unwritable_data_dir_at_start_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    drop(BinaryApp::start(dir.path()));
    let text = start_fails(
        Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_uts-aggregator"))
            .args(["--listen", "127.0.0.1:0", "--partitions", "3", "--data-dir"])
            .arg(dir.path()),
    );
    assert!(text.contains("partition-000.db"), "names the file: {text}");
    assert!(text.contains("I/O error"), "names the cause: {text}");
}

#[tokio::test]
async fn a_panicking_handler_answers_a_json_500_and_is_counted() {
    let app = TestApp::builder()
        .wrap_store(PanicOnTopic::wrap("boom"))
        .spawn()
        .await;
    let response = app.get("/events?topic=boom").await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "internal error");
    // The connection and the service carry on.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("aggregator_http_handler_panics_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/events\",status=\"500\""));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_an_id_and_an_access_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::start(dir.path());
    let client = reqwest::Client::new();
    let given = client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42", "propagated");
    let made = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = app.log.lock().unwrap().iter().any(|line| {
            let line: Value = serde_json::from_str(line).unwrap_or_default();
            line["target"] == "access"
                && line["fields"]["request_id"] == "trace-me-42"
                && line["fields"]["route"] == "/healthz"
                && line["fields"]["status"] == 200
                && line["fields"]["method"] == "GET"
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no access log line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
