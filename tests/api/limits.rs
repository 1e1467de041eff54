//! Guarantee 10: the open-files limit is raised and checked at start, not hit while serving.

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::app::event;
use crate::support::process::{BinaryApp, start_fails};

/// The binary under `ulimit <flags> 1024` (a soft limit only with `-Sn`, both with `-n`).
fn under_ulimit(flags: &str, data_dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit {flags} 1024 && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_uts-aggregator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--partitions", "2"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("AGG_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    command
}

/// With a hard limit of 1024 open files, the default 1024 connections cannot fit: the start is
/// refused naming the numbers and what would fit; with `--max-connections` lowered to that, it
/// starts.
#[test]
fn a_limit_too_low_for_the_connection_cap_refuses_start_naming_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let refused = start_fails(&mut under_ulimit("-n", &dir.path().join("data"), &[]));
    assert!(refused.contains("open-files limit is 1024"), "{refused}");
    assert!(refused.contains("--max-connections to"), "{refused}");
    assert!(
        !dir.path().join("data").join("partition-000.db").exists(),
        "refused before any partition file was opened"
    );
    let app = BinaryApp::from_command(under_ulimit(
        "-n",
        &dir.path().join("data"),
        &["--max-connections", "400"],
    ));
    drop(app);
}

/// A soft limit of 1024 (a common default) is raised at start: 1020 streams are opened (as many
/// as reader slots allow; the rest refused with 503 at once) and publishes and `/readyz` are
/// still answered. On the main before this, the 1020 streams exhausted the descriptors and
/// publishes got no reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_limit_of_1024_is_raised_and_1020_streams_leave_publishes_answered() {
    let dir = tempfile::tempdir().unwrap();
    let app = BinaryApp::from_command(under_ulimit("-Sn", &dir.path().join("data"), &[]));
    let address = app.socket_address();
    let mut streams = Vec::new();
    let mut unanswered = 0;
    for i in 0..1020 {
        let mut conn = tokio::net::TcpStream::connect(&address).await.unwrap();
        conn.write_all(
            format!("GET /events/stream?topic=s{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        // Every stream is answered: 200 within the reader slots, 503 past them.
        let mut head = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut head)).await {
            Ok(Ok(_)) if head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.1 503") => {
            }
            _ => unanswered += 1,
        }
        streams.push(conn);
        if unanswered > 3 {
            break;
        }
    }
    assert_eq!(unanswered, 0, "every stream answered (200 or 503)");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let reply = client
        .post(format!("http://{address}/publish"))
        .json(&event("t", "1"))
        .send()
        .await
        .expect("a publish is answered with 1020 streams open");
    assert_eq!(reply.status(), 200);
    let ready = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("/readyz is answered");
    assert_eq!(ready.status(), 200);
    drop(streams);
}

/// Memory does not grow with `--partitions`: the front cache is a total split across the
/// partitions and allocated as keys arrive, so 256 idle partitions stay within 300 MiB (858 MiB
/// before: 100,000 keys reserved per partition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_partitions_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_uts-aggregator"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--partitions", "256"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("AGG_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let app = BinaryApp::from_command(command);
    let reply = reqwest::Client::new()
        .post(format!("{}/publish", app.address))
        .json(&event("t", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let rss = crate::support::process::rss_kib(app.child.id()) as f64 / 1024.0;
    println!(
        "PARTITIONS 256 idle: RSS {rss:.0} MiB, peak {:.0} MiB",
        app.peak_rss_mib()
    );
    assert!(rss <= 300.0, "RSS {rss:.0} MiB with 256 idle partitions");
}
