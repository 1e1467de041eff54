//! The low-space guard on a real small file system: a tmpfs the test mounts itself (root).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{big_event, event};
use crate::support::process::BinaryApp;

/// A tmpfs of `mib` MiB mounted on a temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs (needs root)");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn ready_reasons(client: &reqwest::Client, address: &str) -> (u16, String) {
    let response = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// On a 64 MiB file system half filled by another file, publishes of ~1 MB at a steady pace
/// are acknowledged until free space falls below `--min-free-disk-mib 12`; then they get 503
/// naming the low disk, `/readyz` turns red, and no commit ever fails for lack of space. Every
/// acknowledged event is stored. Deleting the other file clears both within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_mount,
    ignore = "needs root to mount a tmpfs (always runs under CI=true)"
)]
async fn publishes_stop_before_the_disk_is_full_and_resume_when_space_returns() {
    let fs = Tmpfs::mount(64);
    let filler: PathBuf = fs.path().join("filler");
    std::fs::write(&filler, vec![7u8; 32 * 1024 * 1024]).unwrap();
    let data_dir = fs.path().join("data");
    let app = BinaryApp::start_args(&data_dir, &["--min-free-disk-mib", "12"]);
    let client = reqwest::Client::new();
    let mut acked = 0;
    let mut refusal = None;
    for request in 0..200 {
        let events: Vec<Value> = (0..100)
            .map(|i| big_event("fill", &format!("r{request}-{i}"), 10_000))
            .collect();
        let response = client
            .post(format!("{}/publish", app.address))
            .json(&events)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        match status {
            200 => acked += 100,
            503 if body["error"].as_str().unwrap().contains("low disk space") => {
                refusal = Some(body);
                break;
            }
            other => panic!("after {acked} events: {other} {body}"),
        }
        // ~10 MB/s: the guard samples every second, well inside its 12 MiB margin.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refusal = refusal.expect("the guard refused before 200 requests");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("--min-free-disk-mib 12"),
        "{refusal}"
    );
    // Events accepted since the last sample count twice their size against the free space
    // (`disk::DISK_BYTES_PER_EVENT_BYTE`), so the guard refuses a little earlier than the
    // space itself runs out; it still takes several requests, not the first one.
    assert!(acked >= 500, "acknowledged {acked} before the guard");
    let (status, body) = ready_reasons(&client, &app.address).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("low disk space"), "{body}");
    let metrics = client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("aggregator_disk_low 1"), "{metrics}");
    assert!(
        !app.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("database or disk is full"))
    );
    let stats = crate::support::workload::stats(&client, &app.address).await;
    assert_eq!(
        stats["unique_processed"], acked,
        "every acknowledged event is stored"
    );

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = ready_reasons(&client, &app.address).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not ready after space returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = client
        .post(format!("{}/publish", app.address))
        .json(&event("fill", "after"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "publishes accepted again");
}

/// One publisher as fast as it can go, with a 16 MiB margin: events accepted since the last
/// sample count against the free space, so the guard refuses before the disk fills between two
/// samples. Before, such a writer filled the disk in 1.8 s (503 "storage unavailable").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_mount,
    ignore = "needs root to mount a tmpfs (always runs under CI=true)"
)]
async fn a_fast_writer_is_stopped_before_the_disk_fills_between_samples() {
    let fs = Tmpfs::mount(64);
    std::fs::write(fs.path().join("filler"), vec![7u8; 32 * 1024 * 1024]).unwrap();
    let app = BinaryApp::start_args(&fs.path().join("data"), &["--min-free-disk-mib", "16"]);
    // Four publishers of 3.5 MB requests: 16 MiB is written within one sampling interval.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let address = app.address.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for request in 0..100 {
                    let events: Vec<Value> = (0..70)
                        .map(|i| big_event("fast", &format!("w{writer}-r{request}-{i}"), 50_000))
                        .collect();
                    let response = match client
                        .post(format!("{address}/publish"))
                        .json(&events)
                        .send()
                        .await
                    {
                        Ok(response) => response,
                        // A refusal sent before the body was read closes the connection, and
                        // the client may see that as a broken pipe: readiness says why.
                        Err(e) => {
                            let (status, body) = ready_reasons(&client, &address).await;
                            assert_eq!(status, 503, "{e}: {body}");
                            assert!(body.contains("low disk space"), "{e}: {body}");
                            return;
                        }
                    };
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap();
                    match status {
                        200 => {}
                        503 if body["error"].as_str().unwrap().contains("low disk space") => {
                            return;
                        }
                        other => panic!("{other} {body} (the disk filled first)"),
                    }
                }
                panic!("the guard never refused");
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}
