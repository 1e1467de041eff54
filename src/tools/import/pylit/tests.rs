//! The literal reader against what Python writes.

use super::*;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn reads_what_python_str_writes() {
    let text = r#"{'id': 7, 'ok': True, 'no': False, 'none': None, 'f': -1.5e-07,
        'list': [1, 'two', (3, 4), [], ()], 'set': {1, 2}, 'empty': set(),
        "it's": "say \"hi\"", 'esc': '\n\t\\ \x00 \xe9 \u2713 \U0001f600 \101',
        'nested': {'a': {'b': [{'c': None}]}}, 1: 'int key', None: 'none key', 'é✓': 'raw'}"#;
    let value = parse(text).unwrap();
    assert_eq!(
        value,
        json!({
            "id": 7, "ok": true, "no": false, "none": null, "f": -1.5e-07,
            "list": [1, "two", [3, 4], [], []], "set": [1, 2], "empty": [],
            "it's": "say \"hi\"", "esc": "\n\t\\ \u{0} é ✓ 😀 A",
            "nested": {"a": {"b": [{"c": null}]}}, "1": "int key", "null": "none key",
            "é✓": "raw",
        })
    );
}

#[test]
fn json_text_that_is_also_python_reads_the_same() {
    let text = r#"{"a": [1, 2.5, "x\u00e9"], "b": {"c": -3}}"#;
    assert_eq!(
        parse(text).unwrap(),
        serde_json::from_str::<Value>(text).unwrap()
    );
}

#[test]
fn refuses_what_is_not_a_literal_with_the_offset() {
    for (text, offset) in [
        ("{'a': datetime.datetime(2025, 1, 1)}", 6),
        ("{'a': 1", 7),
        ("{'a': 'open}", 6),
        ("{'a': 1} trailing", 9),
        ("{'a': inf}", 6),
        ("{'a': 123456789012345678901234567890}", 6),
        ("{'a': '\\ud800'}", 7),
        ("{[1]: 2}", 5),
    ] {
        let error = parse(text).unwrap_err();
        assert_eq!(error.offset, offset, "{text}: {error}");
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let text = "[".repeat(100_000);
    assert!(parse(&text).unwrap_err().reason.contains("nested deeper"));
}

/// Python's `repr` of a JSON-like value: the reference this reader must invert.
fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => python_str_repr(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", python_str_repr(k), python_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// `repr(str)`: single quotes unless the text holds `'` and no `"`; escapes for the quote,
/// backslash, `\t\n\r`, other control characters as `\xhh`.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
        "[ '\"\\\\\\n\\t\\x00-\\x1fé✓]*".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn every_repr_reads_back_as_the_value(value in json_value()) {
        let text = python_repr(&value);
        prop_assert_eq!(parse(&text).unwrap(), value, "{}", text);
    }

    #[test]
    fn any_text_is_read_or_refused_without_panicking(text in ".{0,64}") {
        let _ = parse(&text);
    }
}
