//! How the OpenAPI document describes the domain types the API answers with or takes: an
//! event, a stored event, a topic, a publish's outcome, a field error. The types themselves
//! (`event`, `store`, `ingest`) carry no HTTP derives; each schema here is named like its type
//! (`#[schema(as = ...)]`), and a test checks that a real value's JSON has exactly the fields
//! its schema names.

#![allow(dead_code)] // Schemas only: the fields are read by the derive, never by code.

use utoipa::ToSchema;

/// One event as published.
#[derive(ToSchema)]
#[schema(as = Event)]
pub(super) struct EventSchema {
    /// 1..=255 bytes of UTF-8.
    #[schema(min_length = 1, max_length = 255, example = "orders")]
    topic: String,
    /// 1..=255 bytes; the identity of an event is the pair (`topic`, `event_id`).
    #[schema(min_length = 1, max_length = 255, example = "e-1")]
    event_id: String,
    /// An RFC 3339 date-time, kept as sent.
    #[schema(format = DateTime, example = "2025-10-24T00:00:00Z")]
    timestamp: String,
    /// 0..=255 bytes.
    #[schema(max_length = 255, example = "checkout")]
    source: String,
    /// Any JSON object, nested at most 64 levels; stored and returned as sent.
    #[schema(value_type = Object)]
    payload: (),
}

/// One stored event as `/events` and the stream return it.
#[derive(ToSchema)]
#[schema(as = StoredEvent)]
pub(super) struct StoredEventSchema {
    topic: String,
    event_id: String,
    timestamp: String,
    source: String,
    /// The JSON object as it was published.
    #[schema(value_type = Object)]
    payload: (),
    /// 1, 2, 3, … per topic, without gaps, in commit order.
    #[schema(minimum = 1)]
    seq: i64,
}

/// One topic as `GET /topics` lists it.
#[derive(ToSchema)]
#[schema(as = TopicInfo)]
pub(super) struct TopicInfoSchema {
    topic: String,
    /// Events of the topic stored now.
    events: u64,
    /// The highest `seq` ever given in the topic.
    last_seq: i64,
}

/// The result of an accepted publish: every event committed.
#[derive(ToSchema)]
#[schema(as = PublishOutcome)]
pub(super) struct PublishOutcomeSchema {
    received: usize,
    unique_processed: usize,
    duplicate_dropped: usize,
}

/// One schema violation: which event (by index in the request) and which field.
#[derive(ToSchema)]
#[schema(as = FieldError)]
pub(super) struct FieldErrorSchema {
    index: usize,
    field: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use crate::event::{Event, FieldError};
    use crate::ingest::PublishOutcome;
    use crate::store::{StoredEvent, TopicInfo};

    fn keys(value: &impl serde::Serialize) -> BTreeSet<String> {
        match serde_json::to_value(value).unwrap() {
            Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    fn documented(name: &str) -> BTreeSet<String> {
        let document = super::super::openapi::tests::document_json();
        let schema = &document["components"]["schemas"][name];
        schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} is not in the document: {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_schema_names_exactly_the_fields_its_type_serialises() {
        let payload = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let event: Event = serde_json::from_value(json!({
            "topic": "t", "event_id": "e", "timestamp": "2025-10-24T00:00:00Z",
            "source": "s", "payload": {}
        }))
        .unwrap();
        let stored = StoredEvent {
            topic: "t".into(),
            event_id: "e".into(),
            timestamp: "2025-10-24T00:00:00Z".into(),
            source: "s".into(),
            payload,
            seq: 1,
            position: 1,
        };
        let topic = TopicInfo {
            topic: "t".into(),
            events: 1,
            last_seq: 1,
        };
        let error = FieldError {
            index: 0,
            field: "topic",
            message: "m".into(),
        };
        assert_eq!(keys(&event), documented("Event"));
        assert_eq!(keys(&stored), documented("StoredEvent"));
        assert_eq!(keys(&topic), documented("TopicInfo"));
        assert_eq!(
            keys(&PublishOutcome::default()),
            documented("PublishOutcome")
        );
        assert_eq!(keys(&error), documented("FieldError"));
    }
}
