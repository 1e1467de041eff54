//! `/metrics`: every series the contract names, the same numbers as `/stats`, and lifetime
//! counters that continue across a restart instead of starting again at zero.

use std::collections::HashMap;

use serde_json::{Value, json};

use uts_aggregator::http::Secret;

use crate::support::app::{TestApp, event, on_every_store};

/// Unlabelled samples of the exposition text, by metric name.
async fn scrape(app: &TestApp) -> (String, HashMap<String, f64>) {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect();
    (text, samples)
}

on_every_store! {
async fn every_contract_series_is_exported_and_matches_stats(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    app.publish_ok(&json!([event("a", "1"), event("a", "1"), event("b", "2")]))
        .await;
    let mut bad = event("a", "3");
    bad["timestamp"] = json!("soon");
    assert_eq!(app.publish(&bad).await.0, 422);

    let (text, samples) = scrape(&app).await;
    for series in [
        "aggregator_events_received_total",
        "aggregator_events_unique_total",
        "aggregator_events_duplicate_total",
        "aggregator_events_rejected_total",
        "aggregator_partition_queue_depth{partition=\"0\"}",
        "aggregator_batch_size_bucket",
        "aggregator_commit_duration_seconds_bucket",
        "aggregator_publish_duration_seconds_bucket",
        "aggregator_uptime_seconds",
        "aggregator_readers",
        "aggregator_http_requests_total{route=\"/publish\",status=\"422\"}",
        "# HELP aggregator_events_received_total",
        "aggregator_build_info{version=",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    let stats = app.stats().await;
    for (series, field) in [
        ("aggregator_events_received_total", "received"),
        ("aggregator_events_unique_total", "unique_processed"),
        ("aggregator_events_duplicate_total", "duplicate_dropped"),
        ("aggregator_events_rejected_total", "rejected"),
    ] {
        assert_eq!(
            samples[series],
            stats[field].as_f64().unwrap(),
            "{series} vs /stats {field}"
        );
    }
    assert_eq!(samples["aggregator_events_received_total"], 3.0);
    assert_eq!(samples["aggregator_events_rejected_total"], 1.0);
    assert!(samples["process_resident_memory_bytes"] > 1e6);
    assert!(samples["process_open_fds"] >= 3.0);
    // Unmatched paths share one label: a scanner cannot create series.
    assert_eq!(app.get("/no/such/path").await.status(), 404);
    let (text, _) = scrape(&app).await;
    assert!(text.contains("route=\"other\",status=\"404\""), "{text}");
    assert!(!text.contains("/no/such/path"));
    app.stop().await;
}
}

on_every_store! {
async fn lifetime_counters_continue_after_a_restart(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let events: Vec<Value> = (0..40).map(|i| event("t", &(i % 30).to_string())).collect();
    app.publish_ok(&Value::Array(events)).await;
    let (_, before) = scrape(&app).await;
    assert_eq!(before["aggregator_events_received_total"], 40.0);
    let app = app.restart().await;
    let (_, after) = scrape(&app).await;
    for series in [
        "aggregator_events_received_total",
        "aggregator_events_unique_total",
        "aggregator_events_duplicate_total",
    ] {
        assert_eq!(after[series], before[series], "{series} after restart");
    }
    app.publish_ok(&event("t", "new")).await;
    let (_, later) = scrape(&app).await;
    assert_eq!(later["aggregator_events_received_total"], 41.0);
    app.stop().await;
}
}

#[tokio::test]
async fn metrics_stay_open_when_a_token_is_required() {
    let app = TestApp::builder()
        .config(|c| c.http.api_token = Some(Secret::new("t0ken")))
        .spawn()
        .await;
    let (text, _) = scrape(&app).await;
    assert!(
        !text.contains("t0ken"),
        "the token never appears in metrics"
    );
    app.stop().await;
}
