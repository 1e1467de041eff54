//! Property: for random sequences of publishes (random topics, ids, duplicates, batch shapes,
//! and restarts), every reply, the stored events in seq order and the counters equal what a
//! plain `HashSet` model predicts.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::Value;

use crate::support::app::{Backend, TestApp, event};

#[derive(Debug, Clone)]
enum Op {
    Publish(Vec<(u8, u8)>),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec((0u8..5, 0u8..25), 1..12).prop_map(Op::Publish),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    seen: HashSet<(String, String)>,
    order: HashMap<String, Vec<String>>,
    received: u64,
}

impl Model {
    /// Returns the (unique, duplicate) the service must answer.
    fn publish(&mut self, events: &[(String, String)]) -> (u64, u64) {
        let mut unique = 0;
        for (topic, id) in events {
            if self.seen.insert((topic.clone(), id.clone())) {
                self.order
                    .entry(topic.clone())
                    .or_default()
                    .push(id.clone());
                unique += 1;
            }
        }
        self.received += events.len() as u64;
        (unique, events.len() as u64 - unique)
    }
}

async fn check(ops: Vec<Op>, backend: Backend) {
    let mut app = TestApp::builder().backend(backend).spawn().await;
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Restart => app = app.restart().await,
            Op::Publish(shape) => {
                let events: Vec<(String, String)> = shape
                    .iter()
                    .map(|(t, i)| (format!("topic-{t}"), format!("id-{i}")))
                    .collect();
                let body: Vec<Value> = events.iter().map(|(t, i)| event(t, i)).collect();
                let body = if body.len() == 1 {
                    body[0].clone()
                } else {
                    Value::Array(body)
                };
                assert_eq!(app.publish_ok(&body).await, model.publish(&events));
            }
        }
    }
    let stats = app.stats().await;
    assert_eq!(stats["received"].as_u64().unwrap(), model.received);
    assert_eq!(
        stats["unique_processed"].as_u64().unwrap(),
        model.seen.len() as u64
    );
    assert_eq!(
        stats["topic_count"].as_u64().unwrap(),
        model.order.len() as u64
    );
    for (topic, ids) in &model.order {
        let stored = app.topic_events(topic, 10).await;
        let stored: Vec<&str> = stored
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(&stored, ids, "topic {topic} in publish order");
    }
    app.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn stored_set_and_counters_match_a_hashset_model(ops in prop::collection::vec(op(), 1..25)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(check(ops, Backend::Sqlite));
    }
}

proptest! {
    // Fewer cases: each one creates a database on the shared PostgreSQL test server.
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    #[cfg_attr(
        no_postgres,
        ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
    )]
    fn stored_set_and_counters_match_a_hashset_model_on_postgres(ops in prop::collection::vec(op(), 1..25)) {
        if let Some(backend) = Backend::postgres("model::on_postgres") {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(check(ops, backend));
        }
    }
}
