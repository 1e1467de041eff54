//! `uts-aggregator backup` against a data dir the service is writing.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use crate::support::eventually::eventually;
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
    let data_dir = dir.path().join("data");
    let app = BinaryApp::start(&data_dir);
    let (acked, sent) = (Acked::default(), Acked::default());
    let publishers = spawn_publishers(std::slice::from_ref(&app.address), 3, 0, &acked, &sent);
    // The backup starts once the publishers have some history behind them.
    let before: HashSet<(String, String)> =
        eventually("100 events acknowledged", Duration::from_secs(60), || {
            let acked = acked.lock().unwrap();
            std::future::ready((acked.len() > 100).then(|| acked.clone()))
        })
        .await;
    let out = dir.path().join("copy");
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
/// that is not one, and a target inside the data dir.
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

    let inside = data_dir.join("backups").join("today");
    std::fs::create_dir(data_dir.join("backups")).unwrap();
    let output = backup(&data_dir, &inside);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is inside the data dir"), "{stderr}");
    assert!(!inside.exists(), "nothing created");
}

/// A backup killed (SIGKILL, or SIGTERM) at several points of its copy never leaves a folder
/// that `serve` adopts with data missing: `--out` is either absent or complete (a service on it
/// holds all 60,000 events), and the partial folder left beside it is refused at start, naming
/// the missing manifest. On the main before this check, `--out` held the partitions copied so
/// far and `serve` started on it with half the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_leaves_nothing_serve_adopts() {
    use crate::support::app::{TestApp, event};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = TestApp::builder().dir(&data_dir).spawn().await;
    for batch in 0..60 {
        let events: Vec<_> = (0..1000)
            .map(|i| {
                let mut e = event(&format!("t{}", i % 7), &format!("{batch}-{i}"));
                e["payload"]["pad"] = "p".repeat(200).into();
                e
            })
            .collect();
        app.publish_ok(&serde_json::Value::Array(events)).await;
    }
    app.stop().await;

    let kills = [
        (0, nix::sys::signal::Signal::SIGKILL),
        (15, nix::sys::signal::Signal::SIGKILL),
        (40, nix::sys::signal::Signal::SIGTERM),
        (80, nix::sys::signal::Signal::SIGKILL),
        (160, nix::sys::signal::Signal::SIGKILL),
        (400, nix::sys::signal::Signal::SIGKILL),
    ];
    let mut caught_part_way = false;
    for (n, (after_ms, signal)) in kills.into_iter().enumerate() {
        let out = dir.path().join(format!("copy-{n}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
            .arg("backup")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let status = child.wait().unwrap();
        if out.exists() {
            let copy = BinaryApp::start(&out);
            let stats =
                crate::support::workload::stats(&reqwest::Client::new(), &copy.address).await;
            assert_eq!(
                stats["unique_processed"], 60_000,
                "kill after {after_ms} ms ({status}): a copy under --out is complete"
            );
        }
        let partial = dir.path().join(format!(".copy-{n}.partial-{}", child.id()));
        let has_partitions = std::fs::read_dir(&partial).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("partition-")
            })
        });
        eprintln!(
            "kill after {after_ms} ms: --out exists {}, partial copy {has_partitions}",
            out.exists()
        );
        caught_part_way |= has_partitions;
        if has_partitions {
            let refused = crate::support::process::start_fails(
                Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
                    .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                    .arg(&partial),
            );
            assert!(refused.contains("no manifest"), "{refused}");
        }
    }
    assert!(
        caught_part_way,
        "some kill landed while partitions were being copied"
    );
}
