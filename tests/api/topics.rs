//! `GET /topics` walks every topic once, in byte order, with counts kept as events commit;
//! `/stats` lists at most the first 1000 topic names and says when it cut the list.

use serde_json::Value;

use crate::support::app::{TestApp, event, on_every_store};

on_every_store! {
    async fn topics_walk_every_topic_once_sorted_and_stats_caps_its_list(backend: Backend) {
        let app = TestApp::builder().backend(backend).spawn().await;
        // 2500 topics with 255-byte names; topic k has k % 3 + 1 events, one of them re-sent.
        let name = |k: usize| format!("{k:05}{}", "t".repeat(250));
        for chunk in (0..2500).collect::<Vec<_>>().chunks(500) {
            let events: Vec<Value> = chunk.iter().map(|&k| event(&name(k), "0")).collect();
            app.publish_ok(&Value::Array(events)).await;
        }
        let extra: Vec<Value> = (0..2500)
            .flat_map(|k| (1..=k % 3).map(move |i| (k, i)))
            .map(|(k, i)| event(&name(k), &i.to_string()))
            .chain([event(&name(7), "0")])
            .collect();
        for chunk in extra.chunks(1000) {
            app.publish_ok(&Value::Array(chunk.to_vec())).await;
        }

        let stats = app.stats().await;
        assert_eq!(stats["topic_count"], 2500);
        assert_eq!(stats["topics_truncated"], true);
        let listed = stats["topics"].as_array().unwrap();
        assert_eq!(listed.len(), 1000);
        assert_eq!(listed[0], name(0));
        assert_eq!(listed[999], name(999));

        let mut walked = Vec::new();
        let mut next = Some("/topics?limit=700".to_string());
        let mut pages = 0;
        while let Some(path) = next {
            let response = app.get(&path).await;
            assert_eq!(response.status(), 200, "{path}");
            next = response.headers().get("link").map(|l| {
                let l = l.to_str().unwrap();
                l[1..l.find('>').unwrap()].to_string()
            });
            let page: Vec<Value> = response.json().await.unwrap();
            assert!(page.len() <= 700);
            walked.extend(page);
            pages += 1;
        }
        assert_eq!(pages, 4);
        assert_eq!(walked.len(), 2500, "every topic once");
        for (k, topic) in walked.iter().enumerate() {
            assert_eq!(topic["topic"], name(k), "sorted by bytes");
            let events = (k % 3 + 1) as u64;
            assert_eq!(topic["events"], events);
            assert_eq!(topic["last_seq"], events);
        }
        // A topic name after the last one: an empty page, no Link.
        let tail = app.get(&format!("/topics?after={}", "z".repeat(10))).await;
        assert!(tail.headers().get("link").is_none());
        assert_eq!(tail.json::<Vec<Value>>().await.unwrap().len(), 0);

        let small = app.get("/stats").await.json::<Value>().await.unwrap();
        assert_eq!(small["topics"].as_array().unwrap().len(), 1000);
        app.stop().await;
    }
}

#[tokio::test]
async fn stats_lists_every_topic_when_there_are_few() {
    let app = TestApp::spawn().await;
    app.publish_ok(&serde_json::json!([event("b", "1"), event("a", "1")]))
        .await;
    let stats = app.stats().await;
    assert_eq!(stats["topics"], serde_json::json!(["a", "b"]));
    assert_eq!(stats["topics_truncated"], false);
    assert_eq!(stats["topic_count"], 2);
    let topics: Value = app.get("/topics").await.json().await.unwrap();
    assert_eq!(
        topics,
        serde_json::json!([
            {"topic": "a", "events": 1, "last_seq": 1},
            {"topic": "b", "events": 1, "last_seq": 1}
        ])
    );
    app.stop().await;
}
