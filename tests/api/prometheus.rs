//! The dashboard against a real Prometheus: the service and Prometheus (Debian's package)
//! run on 127.0.0.1, Prometheus scrapes every second during a load, then every PromQL
//! expression of `grafana/dashboards/uts-aggregator.json` must return data through the HTTP
//! API, and the counters Prometheus scraped must equal `/stats`.
//!
//! Skips with a printed reason when `prometheus` is not installed, except under `CI=true`,
//! where `.ci/run` installs it and a skip would hide a broken dashboard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::app::{TestApp, event};
use crate::support::pg::free_port;

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_prometheus() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

async fn start_prometheus(binary: &Path, target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: uts-aggregator\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("{}/-/ready", prometheus.url))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return prometheus;
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn query(prometheus: &Prometheus, expr: &str) -> Vec<Value> {
    let url = format!(
        "{}/api/v1/query?{}",
        prometheus.url,
        serde_urlencoded::to_string([("query", expr)]).unwrap()
    );
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "success", "query {expr}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn scalar(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/uts-aggregator.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_prometheus,
    ignore = "needs Prometheus: apt-get install prometheus (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn every_dashboard_query_returns_data_and_scraped_counters_equal_stats() {
    let Some(binary) = find_prometheus() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "prometheus is not installed, and under CI this test must run (.ci/run installs it)"
        );
        eprintln!(
            "skipping the Prometheus test: no `prometheus` on PATH (apt-get install prometheus)"
        );
        return;
    };
    // With a retention nothing reaches (1 h), so the retention panel has data too.
    let app = TestApp::builder()
        .config(|c| c.store.retention = Some(Duration::from_secs(3600)))
        .spawn()
        .await;
    let target = app.address.trim_start_matches("http://").to_string();
    let prometheus = start_prometheus(&binary, &target).await;

    // Start the load only once Prometheus scrapes the service, so the load spans several
    // scrapes: otherwise every sample could hold the final values and every rate would be 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&query(&prometheus, "up{job=\"uts-aggregator\"}").await) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the service"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A few seconds of mixed traffic so every series exists and rates span several scrapes:
    // new events, duplicates, a 422, a 400 and a 404.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let batch: Vec<Value> = (0..50)
            // ids repeat within the batch (i % 40) on the same topic: 10 duplicates per batch.
            .map(|i| {
                event(
                    &format!("topic-{}", i % 40 % 7),
                    &format!("r{round}-{}", i % 40),
                )
            })
            .collect();
        app.publish_ok(&Value::Array(batch)).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = app.publish(&json!({"topic": "t", "event_id": "x", "timestamp": "nope", "source": "", "payload": {}})).await;
    assert_eq!(status, 422);
    let (status, _) = app.publish(&json!([])).await;
    assert_eq!(status, 400);
    assert_eq!(app.get("/does-not-exist").await.status(), 404);

    // Wait until Prometheus has scraped the final numbers, then compare with /stats.
    let stats = app.stats().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (series, field) in [
        ("aggregator_events_received_total", "received"),
        ("aggregator_events_unique_total", "unique_processed"),
        ("aggregator_events_duplicate_total", "duplicate_dropped"),
        ("aggregator_events_rejected_total", "rejected"),
    ] {
        let expected = stats[field].as_f64().unwrap();
        loop {
            let scraped = scalar(&query(&prometheus, series).await);
            if scraped == Some(expected) {
                eprintln!("{series} = {expected} (Prometheus) == /stats {field}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{series}: Prometheus has {scraped:?}, /stats has {expected}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert!(stats["received"].as_u64().unwrap() > 0);
    assert!(stats["duplicate_dropped"].as_u64().unwrap() > 0);

    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "the dashboard has its panels");
    // rate() needs two scrapes of a series inside its window; the error series appeared only
    // at the end of the load, so give each query a few scrape intervals.
    let deadline = Instant::now() + Duration::from_secs(15);
    for (panel, expr) in exprs {
        let result = loop {
            let result = query(&prometheus, &expr).await;
            if !result.is_empty() {
                break result;
            }
            assert!(
                Instant::now() < deadline,
                "panel {panel:?}: {expr} returned no data"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        eprintln!(
            "ok  {panel}: {expr} -> {} series, first {}",
            result.len(),
            result[0]["value"]
        );
    }
    // Not just present but meaningful: the load shows as a rate and as latency quantiles.
    let received_rate = scalar(
        &query(
            &prometheus,
            "max(rate(aggregator_events_received_total[1m]))",
        )
        .await,
    );
    assert!(
        received_rate.is_some_and(|r| r > 0.0),
        "ingest rate {received_rate:?}"
    );
    let p99 = scalar(
        &query(
            &prometheus,
            "histogram_quantile(0.99, sum by (le) (rate(aggregator_publish_duration_seconds_bucket[1m])))",
        )
        .await,
    );
    assert!(
        p99.is_some_and(|s| s.is_finite() && s > 0.0),
        "publish p99 {p99:?}"
    );
    app.stop().await;
}
