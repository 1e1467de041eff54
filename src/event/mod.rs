//! The event and the parsing + validation of a `POST /publish` body.
//!
//! Pure and synchronous: bytes in, `Vec<Event>` or a [`RequestError`] out. A request is
//! validated whole before anything is enqueued (guarantee 4), so every bad event of a request
//! is reported at once, by index and field.
//!
//! - this file: the event type, the limits, the errors;
//! - [`parse`]: the JSON and NDJSON body parsers;
//! - [`fields`]: the rules of each field;
//! - [`scan`]: the bracket scan that catches deep nesting before serde's recursion limit, and
//!   the recursion-free JSON syntax check used only there.

mod fields;
mod parse;
mod scan;

pub use parse::{parse_ndjson_body, parse_publish_body};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest `topic`, `event_id` and `source`, in bytes.
pub const MAX_FIELD_BYTES: usize = 255;
/// Deepest allowed `payload` nesting; the payload object itself is level 1.
pub const MAX_PAYLOAD_DEPTH: usize = 64;
/// serde_json refuses input nested 128 levels deep; anything nested deeper than this is
/// rejected by our own scan before serde sees it, so the answer is a 422, not a parse error.
const PRE_SCAN_DEPTH_LIMIT: usize = 100;

/// One validated event. `payload` keeps the publisher's JSON text, so it is stored and
/// returned losslessly without being re-serialised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// 1..=255 bytes of UTF-8.
    pub topic: String,
    /// 1..=255 bytes; the identity of an event is the pair (`topic`, `event_id`).
    pub event_id: String,
    /// An RFC 3339 date-time, kept as sent.
    pub timestamp: String,
    /// 0..=255 bytes.
    pub source: String,
    /// Any JSON object, nested at most 64 levels; stored and returned as sent.
    pub payload: Box<RawValue>,
}

impl Event {
    /// Heap and inline bytes this event holds, as charged on the in-flight memory budget.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.topic.capacity()
            + self.event_id.capacity()
            + self.timestamp.capacity()
            + self.source.capacity()
            + self.payload.get().len()
    }
}

/// One schema violation: which event (by index in the request) and which field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}

/// Why a publish body was refused. Each variant maps to one status code in `http::error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// 400: not UTF-8 or not JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// 400: JSON of the wrong shape.
    #[error("{0}")]
    WrongShape(String),
    /// 413: more events than max-batch.
    #[error("request holds {count} events; the limit is {max}")]
    TooManyEvents { count: usize, max: usize },
    /// 422: one or more events break the schema.
    #[error("invalid event")]
    Invalid(Vec<FieldError>),
}
