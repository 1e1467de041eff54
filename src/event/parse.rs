//! The body parsers: one event or an array of them (JSON), or one per line (NDJSON), each
//! event validated field by field.

use serde_json::value::RawValue;

use super::fields::{depth_error, validate_event};
use super::scan::{check_json_syntax, first_element_deeper_than};
use super::{Event, FieldError, PRE_SCAN_DEPTH_LIMIT, RequestError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MAX_FIELD_BYTES;

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
    fn unknown_fields_are_ignored_and_empty_source_is_allowed() {
        let body = r#"{"topic":"t","event_id":"1","timestamp":"2025-10-24T07:00:00+07:00","source":"","payload":{},"extra":1}"#;
        assert_eq!(
            parse_publish_body(body.as_bytes(), 1).unwrap()[0].source,
            ""
        );
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
}
