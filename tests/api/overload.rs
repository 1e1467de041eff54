//! Overload: with tiny queues and a "slow disk" (one job per commit), a flood gets 200 or
//! 503 + `Retry-After` (never a hang), nothing of a 503 is stored, and the load generator,
//! retrying with backoff, still ends with exact counts.

use std::time::Duration;

use serde_json::Value;
use uts_aggregator::tools::publish::{PublishArgs, run};

use crate::support::app::{TestApp, event};

fn overloaded() -> impl FnOnce(&mut uts_aggregator::config::Config) {
    |c| {
        c.ingest.queue_capacity = 40;
        c.http.max_events_per_request = 20;
        c.ingest.batch_max_events = 1;
        c.ingest.enqueue_timeout_ms = 5;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_503_with_retry_after_and_nothing_of_a_503_is_stored() {
    let app = std::sync::Arc::new(TestApp::builder().config(overloaded()).spawn().await);
    let floods: Vec<_> = (0..48)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for round in 0..8 {
                    let batch: Vec<Value> = (0..20)
                        .map(|i| event(&format!("flood-{}", i % 5), &format!("{task}-{round}-{i}")))
                        .collect();
                    let response = tokio::time::timeout(
                        Duration::from_secs(10),
                        app.client
                            .post(format!("{}/publish", app.address))
                            .json(&batch)
                            .send(),
                    )
                    .await
                    .expect("a flooded service answers, it never hangs")
                    .unwrap();
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body: Value = response.json().await.unwrap();
                    outcomes.push((status, retry_after, body));
                }
                outcomes
            })
        })
        .collect();
    let mut acked_events = 0u64;
    let mut refused = 0;
    for flood in floods {
        for (status, retry_after, body) in flood.await.unwrap() {
            match status {
                200 => acked_events += body["received"].as_u64().unwrap(),
                503 => {
                    refused += 1;
                    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                    assert!(
                        body["error"].as_str().unwrap().contains("overloaded"),
                        "{body}"
                    );
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    assert!(refused > 0, "the flood overflowed the queues");
    assert!(acked_events > 0);
    let stats = app.stats().await;
    assert_eq!(
        stats["received"].as_u64().unwrap(),
        acked_events,
        "exactly the acknowledged events"
    );
    eprintln!("flood: {refused} of 384 requests refused with 503, {acked_events} events stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_retries_503s_and_ends_with_exact_counts() {
    let app = TestApp::builder().config(overloaded()).spawn().await;
    let args = PublishArgs {
        url: vec![app.address.clone()],
        count: Some(3_000),
        deadline: None,
        duration: None,
        dup_ratio: 0.2,
        batch_size: 20,
        format: Default::default(),
        compress: Default::default(),
        concurrency: 48,
        topics: 5,
        rate: None,
        seed: Some(11),
        id_prefix: None,
        api_token: None,
        read_token: None,
        max_retries: 500,
        no_check: false,
        json: true,
    };
    let report = run(&args).await.unwrap();
    assert!(
        report.statuses.get("503").copied().unwrap_or(0) > 0,
        "it was overloaded: {:?}",
        report.statuses
    );
    assert_eq!(report.failed_requests, 0);
    let check = report.check.expect("the /stats check ran");
    assert!(check.passed(), "{check:?}");
    assert_eq!(check.expected_received, 3_000);
    eprintln!(
        "publisher: statuses {:?}, {} retries, check {check:?}",
        report.statuses, report.retries
    );
}
