//! The PostgreSQL writer's pure parts.

use super::*;
use serde_json::value::RawValue;

fn event(topic: &str, id: &str) -> Event {
    Event {
        topic: topic.into(),
        event_id: id.into(),
        timestamp: "2025-10-24T00:00:00Z".into(),
        source: String::new(),
        payload: RawValue::from_string("{}".into()).unwrap(),
    }
}

#[test]
fn the_plan_numbers_new_events_per_topic_and_skips_stored_keys_and_repeats() {
    let events = [
        event("a", "1"),
        event("b", "1"),
        event("a", "2"),
        event("a", "1"),
        event("a", "old"),
        event("c", "1"),
    ];
    let candidates: Vec<&Event> = events.iter().collect();
    let mut stored = HashSet::default();
    stored.insert((&b"a"[..], &b"old"[..]));
    let mut last_seq = HashMap::default();
    last_seq.insert(&b"a"[..], 7);
    last_seq.insert(&b"b"[..], 0);
    last_seq.insert(&b"c"[..], 3);
    let plan = plan_write(&candidates, 2, stored, last_seq);
    assert_eq!(plan.inserted, [true, true, true, false, false, true]);
    assert_eq!(plan.new.seq, [8, 1, 9, 4], "a: 8, 9 after 7; b: 1; c: 4");
    assert_eq!(
        plan.delta,
        Totals {
            received: 8,
            unique_processed: 4,
            duplicate_dropped: 4
        }
    );
    assert_eq!(plan.advanced_topics, [&b"a"[..], b"b", b"c"]);
    assert_eq!(plan.advanced_seqs, [9, 1, 4]);
}
