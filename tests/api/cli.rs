//! The binary as a newcomer meets it: start-up errors, `--listen` forms, and the load
//! generator's messages, deadline and signals.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::app::TestApp;
use crate::support::eventually::eventually;
use crate::support::process::BinaryApp;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
}

fn run(command: &mut Command) -> (i32, String) {
    let output = command.output().expect("run the binary");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_start_up_error_is_one_line_without_a_backtrace_or_colour() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = run(binary()
        .args(["--listen", &address, "--data-dir"])
        .arg(dir.path())
        .env("RUST_BACKTRACE", "1"));
    assert_eq!(code, 1, "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {text}");
    assert!(
        lines[0].contains("cannot listen on") && lines[0].contains(&address),
        "{text}"
    );
    assert!(
        !text.contains("backtrace") && !text.contains('\u{1b}'),
        "{text}"
    );
}

#[test]
fn listen_takes_a_host_name_and_a_bare_port_and_explains_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = binary();
    command
        .args([
            "--listen",
            "localhost:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path());
    let service = BinaryApp::from_command(command);
    assert!(
        service.address.starts_with("http://127.0.0.1:")
            || service.address.starts_with("http://[::1]:")
    );
    drop(service);
    let (code, text) = run(binary().args(["--listen", "8080"]));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("expected host:port, e.g. 0.0.0.0:8080, localhost:8080 or :8080"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_explains_a_missing_token_and_a_bad_url() {
    let app = TestApp::builder()
        .config(|c| c.http.api_token = Some(uts_aggregator::http::Secret::new("t0ken")))
        .spawn()
        .await;
    let (code, text) = run(binary().args([
        "publish",
        "--count",
        "10",
        "--no-check",
        "--url",
        &app.address,
    ]));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("401: the service wants a token; pass --api-token"),
        "{text}"
    );
    let (code, text) = run(binary().args(["publish", "--url", "nonsense"]));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--url \"nonsense\" is not a URL") && text.contains("http://127.0.0.1:8080"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_duration_alone_runs_for_the_duration() {
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let (code, text) = run(binary().args([
        "publish",
        "--duration",
        "2",
        "--rate",
        "500",
        "--batch-size",
        "10",
        "--url",
        &app.address,
    ]));
    assert_eq!(code, 0, "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        text.contains("events acked             1000"),
        "500/s for 2 s: {text}"
    );
    assert!(text.contains("check            OK"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stops_at_its_deadline_against_a_server_that_went_away() {
    // A port that accepted once (for the /stats check) is gone: every publish is refused.
    let dir = tempfile::tempdir().unwrap();
    let service = BinaryApp::start(dir.path());
    let url = service.address.clone();
    let publisher = binary()
        .args([
            "publish",
            "--count",
            "100000",
            "--deadline",
            "3",
            "--url",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The service goes once the publisher is past its start check and publishing.
    received_some(&url).await;
    drop(service);
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || publisher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(text.contains("the --deadline passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_ends_promptly_on_sigterm_with_a_partial_report() {
    let app = TestApp::spawn().await;
    let publisher = binary()
        .args([
            "publish",
            "--duration",
            "60",
            "--rate",
            "200",
            "--url",
            &app.address,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SIGTERM once it is publishing, so the report has something in it.
    received_some(&app.address).await;
    let started = Instant::now();
    kill(Pid::from_raw(publisher.id() as i32), Signal::SIGTERM).unwrap();
    let output = tokio::task::spawn_blocking(move || publisher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // Eventually: SIGTERM ends the run instead of letting it finish its --duration.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("interrupted by a signal"), "{text}");
    assert!(text.contains("events acked"), "a report: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_sends_ndjson_and_compressed_bodies_with_exact_counts() {
    let app = TestApp::spawn().await;
    for (format, compress) in [("ndjson", "none"), ("json", "gzip"), ("ndjson", "zstd")] {
        let (code, text) = run(binary().args([
            "publish",
            "--count",
            "600",
            "--batch-size",
            "50",
            "--format",
            format,
            "--compress",
            compress,
            "--url",
            &app.address,
        ]));
        assert_eq!(code, 0, "{format}/{compress}: {text}");
        assert!(
            text.contains("check            OK"),
            "{format}/{compress}: {text}"
        );
    }
}

/// Waits until the service at `url` has received an event.
async fn received_some(url: &str) {
    let client = reqwest::Client::new();
    eventually(
        "the publisher publishing",
        Duration::from_secs(60),
        || async {
            let stats: serde_json::Value = client
                .get(format!("{url}/stats"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (stats["received"].as_u64()? > 0).then_some(())
        },
    )
    .await;
}
