//! Concurrent publishers: exact unique counts, and per-topic order equal to publish order.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::support::app::{TestApp, event, on_every_store};
use crate::support::workload::publish_overlapping;

on_every_store! {
async fn eight_publishers_with_overlapping_ids_store_each_event_once(backend: Backend) {
    let app = Arc::new(TestApp::builder().backend(backend).spawn().await);
    let (unique, duplicate) = publish_overlapping(std::slice::from_ref(&app), 8, 25).await;
    let distinct = 7 * 50 + 200; // ids 0..550
    assert_eq!(unique, distinct);
    assert_eq!(duplicate, 8 * 200 - distinct);
    let stats = app.stats().await;
    assert_eq!(stats["unique_processed"], distinct);
    assert_eq!(stats["received"], 1600);
    assert_eq!(
        app.walk_pages("/events?limit=97").await.len() as u64,
        distinct
    );
}
}

on_every_store! {
async fn each_topic_seq_order_equals_its_publish_order(backend: Backend) {
    let app = Arc::new(TestApp::builder().backend(backend).spawn().await);
    let topics: Vec<String> = (0..6).map(|t| format!("ordered-{t}")).collect();
    let tasks: Vec<_> = topics
        .iter()
        .cloned()
        .map(|topic| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..60 {
                    // Mix single events and small batches; ids are not in sorted order.
                    let ids: Vec<String> = (0..(i % 3 + 1))
                        .map(|k| format!("{topic}-{}-{k}", 997 * i % 101))
                        .collect();
                    let body: Vec<Value> = ids.iter().map(|id| event(&topic, id)).collect();
                    app.publish_ok(&Value::Array(body)).await;
                    sent.extend(ids);
                }
                (topic, sent)
            })
        })
        .collect();
    let mut expected = HashMap::new();
    for task in tasks {
        let (topic, sent) = task.await.unwrap();
        expected.insert(topic, sent);
    }
    for (topic, sent) in expected {
        let stored = app.topic_events(&topic, 50).await;
        let ids: Vec<&str> = stored
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            sent.iter().map(String::as_str).collect::<Vec<_>>(),
            "topic {topic}"
        );
        let seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());
    }
}
}
