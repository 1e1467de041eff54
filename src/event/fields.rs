//! The rules of each field of an event: strings bounded in bytes, an RFC 3339 timestamp, a
//! payload object nested at most `MAX_PAYLOAD_DEPTH` deep.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::first_element_deeper_than;
use super::{Event, FieldError, MAX_FIELD_BYTES, MAX_PAYLOAD_DEPTH};

/// Every field as raw JSON, so a wrong type becomes a named field error instead of an
/// anonymous serde message. Unknown fields are ignored by serde's default.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    topic: Option<&'a RawValue>,
    #[serde(borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

pub(super) fn validate_event(index: usize, raw: &RawValue) -> Result<Event, Vec<FieldError>> {
    let wire: WireEvent<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        vec![FieldError {
            index,
            field: "event",
            message: e.to_string(),
        }]
    })?;
    let mut errors = Vec::new();
    let mut error = |field, message: String| {
        errors.push(FieldError {
            index,
            field,
            message,
        })
    };

    let topic = bounded_string(wire.topic, 1)
        .map_err(|m| error("topic", m))
        .ok();
    let event_id = bounded_string(wire.event_id, 1)
        .map_err(|m| error("event_id", m))
        .ok();
    let source = bounded_string(wire.source, 0)
        .map_err(|m| error("source", m))
        .ok();
    let timestamp = timestamp(wire.timestamp)
        .map_err(|m| error("timestamp", m))
        .ok();
    let payload = payload(wire.payload).map_err(|m| error("payload", m)).ok();

    match (topic, event_id, timestamp, source, payload) {
        (Some(topic), Some(event_id), Some(timestamp), Some(source), Some(payload)) => Ok(Event {
            topic,
            event_id,
            timestamp,
            source,
            payload,
        }),
        _ => Err(errors),
    }
}

fn required_string(raw: Option<&RawValue>) -> Result<String, String> {
    let raw = raw.ok_or_else(|| "is required".to_string())?;
    serde_json::from_str::<String>(raw.get()).map_err(|_| "must be a string".to_string())
}

fn bounded_string(raw: Option<&RawValue>, min_bytes: usize) -> Result<String, String> {
    let value = required_string(raw)?;
    if value.len() < min_bytes || value.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "must be {min_bytes}..={MAX_FIELD_BYTES} bytes long, got {}",
            value.len()
        ));
    }
    Ok(value)
}

fn timestamp(raw: Option<&RawValue>) -> Result<String, String> {
    let value = required_string(raw)?;
    chrono::DateTime::parse_from_rfc3339(&value)
        .map_err(|e| format!("must be an RFC 3339 date-time such as 2025-10-24T00:00:00Z: {e}"))?;
    Ok(value)
}

fn payload(raw: Option<&RawValue>) -> Result<Box<RawValue>, String> {
    let raw = raw.ok_or_else(|| "is required".to_string())?;
    if !raw.get().starts_with('{') {
        return Err("must be a JSON object".into());
    }
    if first_element_deeper_than(raw.get(), MAX_PAYLOAD_DEPTH).is_some() {
        return Err(format!("is nested deeper than {MAX_PAYLOAD_DEPTH} levels"));
    }
    Ok(raw.to_owned())
}

pub(super) fn depth_error(index: usize) -> FieldError {
    FieldError {
        index,
        field: "payload",
        message: format!("is nested deeper than {MAX_PAYLOAD_DEPTH} levels"),
    }
}
