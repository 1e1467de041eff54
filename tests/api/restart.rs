//! The real binary, restarted: SIGTERM drains and keeps everything; `kill -9` in the middle of
//! a publish stream loses no acknowledged event and leaves the counters consistent.

use std::sync::Arc;
use std::time::Duration;

use crate::support::process::{BinaryApp, start_fails};
use crate::support::workload::{Acked, check_after_restart, spawn_publishers, stats};
use nix::sys::signal::Signal;

async fn run_stream_then(signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::start(dir.path());
    let acked: Acked = Arc::default();
    let sent: Acked = Arc::default();
    let publishers = spawn_publishers(std::slice::from_ref(&app.address), 4, 0, &acked, &sent);
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
    let text = start_fails(
        std::process::Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
            .args(["--listen", "127.0.0.1:0", "--partitions", "5", "--data-dir"])
            .arg(dir.path()),
    );
    assert!(
        text.contains("created with 3 partitions, but 5 were requested"),
        "{text}"
    );
}
