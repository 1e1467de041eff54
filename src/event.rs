//! The event and the parsing + validation of a `POST /publish` body.
//!
//! Pure and synchronous: bytes in, `Vec<Event>` or a [`RequestError`] out. A request is
//! validated whole before anything is enqueued (guarantee 4), so every bad event of a request
//! is reported at once, by index and field.

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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// 1..=255 bytes of UTF-8.
    #[schema(min_length = 1, max_length = 255, example = "orders")]
    pub topic: String,
    /// 1..=255 bytes; the identity of an event is the pair (`topic`, `event_id`).
    #[schema(min_length = 1, max_length = 255, example = "e-1")]
    pub event_id: String,
    /// An RFC 3339 date-time, kept as sent.
    #[schema(format = DateTime, example = "2025-10-24T00:00:00Z")]
    pub timestamp: String,
    /// 0..=255 bytes.
    #[schema(max_length = 255, example = "checkout")]
    pub source: String,
    /// Any JSON object, nested at most 64 levels; stored and returned as sent.
    #[schema(value_type = Object)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

/// Parses and validates a publish body holding one event object or an array of
/// 1..=`max_events` event objects.
pub fn parse_publish_body(body: &[u8], max_events: usize) -> Result<Vec<Event>, RequestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| RequestError::NotJson(format!("body is not UTF-8: {e}")))?;
    let is_array = match text.trim_start().as_bytes().first() {
        Some(b'[') => true,
        Some(b'{') => false,
        _ => {
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map_err(|e| RequestError::NotJson(e.to_string()))?;
            return Err(RequestError::WrongShape(
                "expected an event object or an array of event objects".into(),
            ));
        }
    };
    let base_depth = usize::from(is_array);
    if let Some(index) = first_element_deeper_than(text, base_depth + PRE_SCAN_DEPTH_LIMIT) {
        // Too deep for serde to parse; but "too deep" only applies to JSON. Text that is not
        // JSON at all (50,000 unclosed `[`) is a 400, however deep it goes.
        check_json_syntax(text).map_err(RequestError::NotJson)?;
        return Err(RequestError::Invalid(vec![depth_error(index)]));
    }
    let elements: Vec<&RawValue> = if is_array {
        serde_json::from_str(text).map_err(|e| RequestError::NotJson(e.to_string()))?
    } else {
        vec![serde_json::from_str(text).map_err(|e| RequestError::NotJson(e.to_string()))?]
    };
    if elements.is_empty() {
        return Err(RequestError::WrongShape("the event array is empty".into()));
    }
    if elements.len() > max_events {
        return Err(RequestError::TooManyEvents {
            count: elements.len(),
            max: max_events,
        });
    }
    if let Some(index) = elements.iter().position(|e| !e.get().starts_with('{')) {
        return Err(RequestError::WrongShape(format!(
            "array element {index} is not an event object"
        )));
    }

    let mut checked = Checked::with_capacity(elements.len());
    for (index, raw) in elements.into_iter().enumerate() {
        checked.add(index, raw);
    }
    checked.finish()
}

/// A request's events as they are validated: the good ones, and every field error of the bad.
struct Checked {
    events: Vec<Event>,
    errors: Vec<FieldError>,
}

impl Checked {
    fn with_capacity(events: usize) -> Self {
        Self {
            events: Vec::with_capacity(events),
            errors: Vec::new(),
        }
    }

    fn add(&mut self, index: usize, raw: &RawValue) {
        match validate_event(index, raw) {
            Ok(event) => self.events.push(event),
            Err(mut errors) => self.errors.append(&mut errors),
        }
    }

    /// All events, or every error of the request (nothing of it is stored).
    fn finish(self) -> Result<Vec<Event>, RequestError> {
        if self.errors.is_empty() {
            Ok(self.events)
        } else {
            Err(RequestError::Invalid(self.errors))
        }
    }
}

/// Parses and validates an NDJSON / JSON Lines body: one event object per line (blank lines
/// and a `\r` before the newline are allowed), 1..=`max_events` of them. Each line is parsed on
/// its own, never as one big array; errors name the event by its number (0-based, blank lines
/// not counted), like an array's index.
pub fn parse_ndjson_body(body: &[u8], max_events: usize) -> Result<Vec<Event>, RequestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| RequestError::NotJson(format!("body is not UTF-8: {e}")))?;
    // Walked twice, never collected: counting first allocates nothing, so a small compressed
    // body of millions of short lines costs no line list before the count check (a 4 KB gzip
    // body built a 48 MB list of lines before).
    let lines = || {
        text.split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
    };
    let count = lines().take(max_events.saturating_add(1)).count();
    if count == 0 {
        return Err(RequestError::WrongShape(
            "the body holds no event line".into(),
        ));
    }
    if count > max_events {
        return Err(RequestError::TooManyEvents {
            count: lines().count(),
            max: max_events,
        });
    }
    let mut checked = Checked::with_capacity(count);
    for (index, (line_number, line)) in lines().enumerate() {
        let line_number = line_number + 1;
        if !line.trim_start().starts_with('{') {
            serde_json::from_str::<serde::de::IgnoredAny>(line)
                .map_err(|e| RequestError::NotJson(format!("line {line_number}: {e}")))?;
            return Err(RequestError::WrongShape(format!(
                "line {line_number} is not an event object"
            )));
        }
        if first_element_deeper_than(line, PRE_SCAN_DEPTH_LIMIT).is_some() {
            check_json_syntax(line)
                .map_err(|e| RequestError::NotJson(format!("line {line_number}: {e}")))?;
            checked.errors.push(depth_error(index));
            continue;
        }
        let raw: &RawValue = serde_json::from_str(line)
            .map_err(|e| RequestError::NotJson(format!("line {line_number}: {e}")))?;
        checked.add(index, raw);
    }
    checked.finish()
}

fn validate_event(index: usize, raw: &RawValue) -> Result<Event, Vec<FieldError>> {
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

fn depth_error(index: usize) -> FieldError {
    FieldError {
        index,
        field: "payload",
        message: format!("is nested deeper than {MAX_PAYLOAD_DEPTH} levels"),
    }
}

/// Scans JSON text for brackets outside strings. Returns the index of the first top-level
/// array element (0 when the text is a single value) whose nesting exceeds `max_depth`,
/// counting the outermost bracket as level 1. Does not validate the JSON; serde does that.
pub(crate) fn first_element_deeper_than(text: &str, max_depth: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut index = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let top_is_array = text.trim_start().starts_with('[');
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(index);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if top_is_array && depth == 1 => index += 1,
            _ => {}
        }
    }
    None
}

/// Checks that `text` is one JSON value, without recursion (any depth, constant stack).
/// Used only where serde's recursion limit stops it from telling.
fn check_json_syntax(text: &str) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Expect {
        /// A value (at the start, after `[`, `,` in an array, or `:`).
        Value,
        /// A key or `}` right after `{`.
        FirstKey,
        /// A key after `,` in an object.
        Key,
        /// `:` after a key.
        Colon,
        /// `,` or the closing bracket after a value inside a container, or the end at top level.
        AfterValue,
    }
    let bytes = text.as_bytes();
    let mut containers: Vec<u8> = Vec::new();
    let mut expect = Expect::Value;
    let mut i = 0;
    let error = |i: usize, what: &str| Err(format!("not JSON: {what} at byte {i}"));
    while i < bytes.len() {
        let b = bytes[i];
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            continue;
        }
        match expect {
            Expect::Value | Expect::FirstKey | Expect::Key => {
                let empty_array = expect == Expect::Value && b == b']' && {
                    // `[]`: the `]` right after `[` (only whitespace between).
                    containers.last() == Some(&b'[') && text[..i].trim_end().ends_with('[')
                };
                if empty_array || (expect == Expect::FirstKey && b == b'}') {
                    containers.pop();
                    expect = Expect::AfterValue;
                    i += 1;
                    continue;
                }
                if expect != Expect::Value {
                    if b != b'"' {
                        return error(i, "expected a key");
                    }
                    i = skip_string(bytes, i).ok_or("not JSON: unterminated string")?;
                    expect = Expect::Colon;
                    continue;
                }
                match b {
                    b'[' => {
                        containers.push(b'[');
                        i += 1;
                        continue;
                    }
                    b'{' => {
                        containers.push(b'{');
                        expect = Expect::FirstKey;
                        i += 1;
                        continue;
                    }
                    b'"' => i = skip_string(bytes, i).ok_or("not JSON: unterminated string")?,
                    b't' | b'f' | b'n' => {
                        let word = ["true", "false", "null"]
                            .into_iter()
                            .find(|w| text[i..].starts_with(w))
                            .ok_or("not JSON: unknown literal")?;
                        i += word.len();
                    }
                    b'-' | b'0'..=b'9' => {
                        let end = bytes[i..]
                            .iter()
                            .position(|c| {
                                !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                            })
                            .map_or(bytes.len(), |n| i + n);
                        if text[i..end].parse::<f64>().is_err() {
                            return error(i, "bad number");
                        }
                        i = end;
                    }
                    _ => return error(i, "expected a value"),
                }
                expect = Expect::AfterValue;
            }
            Expect::Colon => {
                if b != b':' {
                    return error(i, "expected `:`");
                }
                expect = Expect::Value;
                i += 1;
            }
            Expect::AfterValue => {
                match (containers.last(), b) {
                    (Some(b'['), b',') => expect = Expect::Value,
                    (Some(b'{'), b',') => expect = Expect::Key,
                    (Some(b'['), b']') | (Some(b'{'), b'}') => {
                        containers.pop();
                    }
                    (None, _) => return error(i, "data after the JSON value"),
                    _ => return error(i, "expected `,` or a closing bracket"),
                }
                i += 1;
            }
        }
    }
    if expect == Expect::AfterValue && containers.is_empty() {
        Ok(())
    } else {
        Err("not JSON: the text ends inside a value".into())
    }
}

/// The index just past the string starting at `bytes[start]` (a `"`), or `None` if it never
/// ends.
fn skip_string(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json(topic: &str, id: &str) -> String {
        format!(
            r#"{{"topic":"{topic}","event_id":"{id}","timestamp":"2025-10-24T00:00:00Z","source":"s","payload":{{"k":[1,2]}}}}"#
        )
    }

    #[test]
    fn single_object_and_array_both_parse() {
        let one = parse_publish_body(event_json("t", "1").as_bytes(), 10).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].payload.get(), r#"{"k":[1,2]}"#);
        let body = format!("[{},{}]", event_json("t", "1"), event_json("u", "2"));
        let many = parse_publish_body(body.as_bytes(), 10).unwrap();
        assert_eq!(many[1].topic, "u");
    }

    #[test]
    fn shape_errors_are_400_kinds() {
        assert!(matches!(
            parse_publish_body(b"{nope", 10),
            Err(RequestError::NotJson(_))
        ));
        assert!(matches!(
            parse_publish_body(&[0xff, 0xfe], 10),
            Err(RequestError::NotJson(_))
        ));
        assert!(matches!(
            parse_publish_body(b"42", 10),
            Err(RequestError::WrongShape(_))
        ));
        assert!(matches!(
            parse_publish_body(b"[]", 10),
            Err(RequestError::WrongShape(_))
        ));
        let body = format!("[{},3]", event_json("t", "1"));
        assert_eq!(
            parse_publish_body(body.as_bytes(), 10).unwrap_err(),
            RequestError::WrongShape("array element 1 is not an event object".into())
        );
    }

    #[test]
    fn too_many_events_is_reported_with_counts() {
        let body = format!("[{},{}]", event_json("t", "1"), event_json("t", "2"));
        assert_eq!(
            parse_publish_body(body.as_bytes(), 1).unwrap_err(),
            RequestError::TooManyEvents { count: 2, max: 1 }
        );
    }

    #[test]
    fn every_bad_field_is_named_with_its_index() {
        let body = format!(
            r#"[{}, {{"topic":"","event_id":7,"timestamp":"yesterday","payload":[]}}]"#,
            event_json("t", "1")
        );
        let Err(RequestError::Invalid(errors)) = parse_publish_body(body.as_bytes(), 10) else {
            panic!("expected 422");
        };
        let fields: Vec<_> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(
            fields,
            [
                (1, "topic"),
                (1, "event_id"),
                (1, "source"),
                (1, "timestamp"),
                (1, "payload")
            ]
        );
    }

    #[test]
    fn field_length_limits_are_bytes_inclusive() {
        let ok = "x".repeat(MAX_FIELD_BYTES);
        assert!(parse_publish_body(event_json(&ok, &ok).as_bytes(), 1).is_ok());
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        let Err(RequestError::Invalid(e)) =
            parse_publish_body(event_json(&long, "1").as_bytes(), 1)
        else {
            panic!("expected 422");
        };
        assert_eq!(e[0].field, "topic");
    }

    fn nested_payload(depth: usize) -> String {
        let inner = format!("{}{}", r#"{"a":"#.repeat(depth - 1), "{}");
        format!(
            r#"{{"topic":"t","event_id":"1","timestamp":"2025-10-24T00:00:00Z","source":"","payload":{inner}{}}}"#,
            "}".repeat(depth - 1)
        )
    }

    #[test]
    fn payload_depth_limit_is_64_and_deeper_is_422_even_past_serde_limit() {
        assert!(parse_publish_body(nested_payload(64).as_bytes(), 1).is_ok());
        for depth in [65, 127, 5000] {
            let Err(RequestError::Invalid(e)) =
                parse_publish_body(format!("[{}]", nested_payload(depth)).as_bytes(), 1)
            else {
                panic!("depth {depth} must be 422");
            };
            assert_eq!((e[0].index, e[0].field), (0, "payload"));
        }
    }

    #[test]
    fn deep_text_that_is_not_json_is_a_400_not_a_422() {
        for body in [
            "[".repeat(50_000),
            r#"{"a":"#.repeat(50_000),
            format!("[{}x", nested_payload(200)),
        ] {
            assert!(
                matches!(
                    parse_publish_body(body.as_bytes(), 1),
                    Err(RequestError::NotJson(_))
                ),
                "{}",
                &body[..20]
            );
        }
    }

    #[test]
    fn the_syntax_check_agrees_with_serde_on_shallow_text() {
        for text in [
            "[]",
            "{}",
            "[1, -2.5e3, true, null, \"a\\\"b\"]",
            r#"{"a": {"b": [{}]}, "c": ""}"#,
            "[",
            "]",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "01x",
            "\"abc",
            "[] []",
            "{,}",
            "[,1]",
            "tru",
            "nul",
            "[1]]",
            "{\"a\":1}}",
        ] {
            let serde_ok = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            assert_eq!(check_json_syntax(text).is_ok(), serde_ok, "{text}");
        }
    }

    #[test]
    fn depth_scan_ignores_brackets_inside_strings_and_counts_elements() {
        assert_eq!(first_element_deeper_than(r#"{"a":"[[[[\"[["}"#, 1), None);
        assert_eq!(first_element_deeper_than(r#"[{}, {"a":{}}]"#, 2), Some(1));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000),
            failure_persistence: None,
            ..Default::default()
        })]

        /// Fuzzing the parser (cargo-fuzz needs a nightly toolchain this project does not
        /// use): arbitrary bytes and JSON-ish token soup never panic, and every answer is one
        /// of the defined outcomes. `FUZZ_CASES=200000 cargo test --lib fuzz` runs it longer.
        #[test]
        fn fuzz_parser_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            soup in proptest::collection::vec(
                proptest::sample::select(vec!["[", "]", "{", "}", ",", ":", "\"topic\"", "\"payload\"",
                    "\"event_id\"", "\"timestamp\"", "\"2025-10-24T00:00:00Z\"", "\"x\"", "1", "null", "\"\\u0000\""]),
                0..60,
            ),
        ) {
            let _ = parse_publish_body(&bytes, 10);
            let text = soup.concat();
            match parse_publish_body(text.as_bytes(), 10) {
                Ok(events) => proptest::prop_assert!(!events.is_empty() && events.len() <= 10),
                Err(RequestError::Invalid(details)) => proptest::prop_assert!(!details.is_empty()),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_empty_source_is_allowed() {
        let body = r#"{"topic":"t","event_id":"1","timestamp":"2025-10-24T07:00:00+07:00","source":"","payload":{},"extra":1}"#;
        assert_eq!(
            parse_publish_body(body.as_bytes(), 1).unwrap()[0].source,
            ""
        );
    }
}
