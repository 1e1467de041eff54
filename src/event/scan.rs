//! Scans of JSON text that need no recursion: how deep brackets nest, and whether text is one
//! JSON value at all, at any depth.

/// Scans JSON text for brackets outside strings. Returns the index of the first top-level
/// array element (0 when the text is a single value) whose nesting exceeds `max_depth`,
/// counting the outermost bracket as level 1. Does not validate the JSON; serde does that.
pub(super) fn first_element_deeper_than(text: &str, max_depth: usize) -> Option<usize> {
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
pub(super) fn check_json_syntax(text: &str) -> Result<(), String> {
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
}
