//! `uts-aggregator backup` against a data dir the service is writing.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use crate::support::process::BinaryApp;
use crate::support::workload::{Acked, check_after_restart, spawn_publishers};

fn backup(data_dir: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
        .arg("backup")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run backup")
}

/// A backup taken while three publishers keep writing holds every event acknowledged before it
/// started; a service started on it has them once each, gapless seqs, counters that add up and
/// match the events, and dedup state: re-sending them gives only duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_serves_every_event_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::start(dir.path());
    let (acked, sent) = (Acked::default(), Acked::default());
    let publishers = spawn_publishers(std::slice::from_ref(&app.address), 3, 0, &acked, &sent);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before: HashSet<(String, String)> = acked.lock().unwrap().clone();
    assert!(before.len() > 100, "{} acknowledged", before.len());
    let out = dir.path().join("copy");
    let data_dir = dir.path().to_path_buf();
    let copy_dir = out.clone();
    let output = tokio::task::spawn_blocking(move || backup(&data_dir, &copy_dir))
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("backup of 3 partitions"), "{stdout}");
    assert!(stderr.contains("partition 3/3"), "{stderr}");
    let during = acked.lock().unwrap().len();
    assert!(
        during > before.len(),
        "publishers kept going during the backup"
    );
    app.signal(nix::sys::signal::Signal::SIGKILL);
    drop(app);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let copy = BinaryApp::start(&out);
    let sent = sent.lock().unwrap().clone();
    check_after_restart(&copy.address, &before, &sent).await;
}

/// A directory that is not empty is refused, and nothing is written into it; so is a data dir
/// that is not one.
#[test]
fn a_backup_refuses_a_non_empty_target_and_a_missing_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = BinaryApp::start(&data_dir);
    drop(app);
    let out = dir.path().join("busy");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let output = backup(&data_dir, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing written");

    let output = backup(&dir.path().join("nowhere"), &dir.path().join("fresh"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a uts-aggregator data dir"),
        "{stderr}"
    );
    assert!(!dir.path().join("fresh").exists(), "nothing created");
}
