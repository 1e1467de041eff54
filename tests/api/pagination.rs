//! Walking `Link rel="next"` pages returns every unique event exactly once.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::app::{TestApp, event, on_every_store};

on_every_store! {
async fn walking_every_page_returns_each_event_exactly_once(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    // Topics with awkward characters, spread over all partitions.
    let topics = ["a", "b b", "c&d=e", "ü/ï?", "z"];
    let mut expected = HashSet::new();
    for (i, topic) in topics.iter().enumerate() {
        let events: Vec<Value> = (0..(20 + i * 7))
            .map(|n| event(topic, &format!("e{n}")))
            .collect();
        for e in &events {
            expected.insert((
                topic.to_string(),
                e["event_id"].as_str().unwrap().to_string(),
            ));
        }
        app.publish_ok(&Value::Array(events)).await;
    }
    for page in [1, 7, 50, 10_000] {
        let all = app.walk_pages(&format!("/events?limit={page}")).await;
        let seen: Vec<(String, String)> = all
            .iter()
            .map(|e| {
                (
                    e["topic"].as_str().unwrap().into(),
                    e["event_id"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(seen.len(), expected.len(), "page size {page}");
        assert_eq!(
            seen.into_iter().collect::<HashSet<_>>(),
            expected,
            "page size {page}"
        );
    }
    for topic in topics {
        let encoded: String = url_encode(topic);
        let by_topic = app
            .walk_pages(&format!("/events?topic={encoded}&limit=6"))
            .await;
        let seqs: Vec<u64> = by_topic
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "topic {topic}"
        );
        assert!(by_topic.iter().all(|e| e["topic"] == topic));
    }
    // after= skips exactly the events up to that seq.
    let rest: Vec<Value> = app
        .get("/events?topic=a&after=15")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest.first().unwrap()["seq"], 16);
    assert_eq!(rest.len(), 5);
    app.stop().await;
}
}

on_every_store! {
async fn a_page_that_holds_everything_has_no_next_link(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    app.publish_ok(&Value::Array(
        (0..5).map(|n| event("t", &n.to_string())).collect(),
    ))
    .await;
    let exact = app.get("/events?topic=t&limit=5").await;
    assert!(exact.headers().get("link").is_none());
    let more = app.get("/events?topic=t&limit=4").await;
    assert_eq!(
        more.headers()["link"],
        "</events?topic=t&after=4&limit=4>; rel=\"next\""
    );
    app.stop().await;
}
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
