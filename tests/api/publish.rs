//! The seed's five tests, as this service's tests, plus the contract's 200 bodies.

use serde_json::{Value, json};

use uts_aggregator::http::Secret;

use crate::support::app::{TestApp, event, on_every_store};

on_every_store! {
async fn dedup_basic_second_publish_of_an_event_is_a_duplicate(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    assert_eq!(app.publish_ok(&event("orders", "e-1")).await, (1, 0));
    assert_eq!(app.publish_ok(&event("orders", "e-1")).await, (0, 1));
    // Same id on another topic is a different event.
    assert_eq!(app.publish_ok(&event("payments", "e-1")).await, (1, 0));
    let stats = app.stats().await;
    assert_eq!(
        (
            stats["received"].as_u64(),
            stats["unique_processed"].as_u64(),
            stats["duplicate_dropped"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    app.stop().await;
}
}

on_every_store! {
async fn persistence_duplicates_are_still_detected_after_reopening_the_store(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    app.publish_ok(&json!([event("t", "1"), event("t", "2")]))
        .await;
    let app = app.restart().await;
    assert_eq!(
        app.publish_ok(&json!([event("t", "1"), event("t", "3")]))
            .await,
        (1, 1)
    );
    let stats = app.stats().await;
    assert_eq!(
        stats["received"], 4,
        "counters continue across restarts: {stats}"
    );
    assert_eq!(stats["unique_processed"], 3);
    app.stop().await;
}
}

on_every_store! {
async fn schema_and_stats_events_come_back_losslessly_with_seq(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let sent = json!({
        "topic": "orders", "event_id": "e-1", "timestamp": "2025-10-24T00:00:00+07:00",
        "source": "", "payload": {"amount": 12.5, "items": [{"sku": "a"}], "note": null, "ü": "ß"},
        "ignored_extra": true,
    });
    app.publish_ok(&sent).await;
    let events: Vec<Value> = app.get("/events?topic=orders").await.json().await.unwrap();
    assert_eq!(events.len(), 1);
    let got = &events[0];
    for field in ["topic", "event_id", "timestamp", "source", "payload"] {
        assert_eq!(got[field], sent[field], "field {field}");
    }
    assert!(
        got["payload"].is_object(),
        "payload is an object, not a string"
    );
    assert_eq!(got["seq"], 1);
    assert!(got.get("ignored_extra").is_none());

    let stats = app.stats().await;
    assert_eq!(stats["topics"], json!(["orders"]));
    assert_eq!(stats["topic_count"], 1);
    assert_eq!(stats["rejected"], 0);
    assert!(stats["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let partitions = stats["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    let committed: u64 = partitions
        .iter()
        .map(|p| p["committed"].as_u64().unwrap())
        .sum();
    assert_eq!(committed, 1);
    assert!(
        partitions
            .iter()
            .all(|p| p["queue_depth"] == 0 && p["worker_alive"] == true)
    );
    app.stop().await;
}
}

on_every_store! {
/// JSON allows any character in a string, NUL included (PostgreSQL text does not, so the
/// PostgreSQL store keeps keys as bytes); keys and payload come back byte for byte.
async fn keys_with_nul_and_non_ascii_characters_round_trip(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let sent = json!({
        "topic": "t\u{0}ö", "event_id": "id\u{0}\u{1F600}", "timestamp": "2025-10-24T00:00:00Z",
        "source": "s\u{0}", "payload": {"k\u{0}": "v\u{0}"},
    });
    assert_eq!(app.publish_ok(&sent).await, (1, 0));
    assert_eq!(app.publish_ok(&sent).await, (0, 1));
    let stored = app.walk_pages("/events").await;
    assert_eq!(stored.len(), 1);
    for field in ["topic", "event_id", "source", "payload"] {
        assert_eq!(stored[0][field], sent[field], "field {field}");
    }
    assert_eq!(app.stats().await["topics"], json!(["t\u{0}ö"]));
    app.stop().await;
}
}

on_every_store! {
async fn small_stress_1000_records_with_many_duplicates_are_counted_exactly(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    // 1000 records over 250 distinct ids on 5 topics: each id sent 4 times.
    let records: Vec<Value> = (0..1000)
        .map(|i| event(&format!("t{}", i % 5), &format!("id-{}", i % 250)))
        .collect();
    let mut unique = 0;
    let mut duplicate = 0;
    for chunk in records.chunks(100) {
        let (u, d) = app.publish_ok(&Value::Array(chunk.to_vec())).await;
        unique += u;
        duplicate += d;
    }
    assert_eq!((unique, duplicate), (250, 750));
    let stats = app.stats().await;
    assert_eq!(
        (
            stats["unique_processed"].as_u64(),
            stats["duplicate_dropped"].as_u64()
        ),
        (Some(250), Some(750))
    );
    assert_eq!(app.walk_pages("/events?limit=100").await.len(), 250);
    app.stop().await;
}
}

on_every_store! {
async fn batch_of_200_with_20_percent_duplicates_gives_exact_stats(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let mut batch: Vec<Value> = (0..160)
        .map(|i| event("batch", &format!("e-{i}")))
        .collect();
    batch.extend((0..40).map(|i| event("batch", &format!("e-{}", i * 3))));
    let (status, reply) = app.publish(&Value::Array(batch)).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"received": 200, "unique_processed": 160, "duplicate_dropped": 40})
    );
    let stats = app.stats().await;
    assert_eq!(stats["received"], 200);
    assert_eq!(stats["unique_processed"], 160);
    assert_eq!(stats["duplicate_dropped"], 40);
    app.stop().await;
}
}

on_every_store! {
async fn health_and_readiness_answer_200_when_running(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    app.stop().await;
}
}

#[tokio::test]
async fn api_token_guards_publish_events_and_stats_but_not_health() {
    let app = TestApp::builder()
        .config(|c| c.http.api_token = Some(Secret::new("s3cret")))
        .spawn()
        .await;
    let (status, body) = app.publish(&event("t", "1")).await;
    assert_eq!((status, body["error"].as_str().is_some()), (401, true));
    assert_eq!(app.get("/events").await.status(), 401);
    let ok = app
        .client
        .post(format!("{}/publish", app.address))
        .bearer_auth("s3cret")
        .json(&event("t", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/stats").await.status(), 401);
    app.stop().await;
}
