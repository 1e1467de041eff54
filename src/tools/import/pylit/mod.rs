//! Python literals as `str()`/`repr()` writes them, read into JSON values: what the prototype
//! stored as an event's payload (`str(payload_dict)`).
//!
//! | Python | JSON |
//! |---|---|
//! | `{'k': v, ...}` | object; keys that are `int`, `float`, `True`/`False`/`None` become strings as `json.dumps` writes them |
//! | `[...]`, `(...)`, `{a, b}`, `set()` | array |
//! | `'...'`, `"..."` (every escape of a Python 3 `str` literal) | string |
//! | `123`, `-1.5e3`, `1_000` | number (integers beyond 64 bits, `inf` and `nan` are refused: JSON cannot hold them exactly) |
//! | `True`, `False`, `None` | `true`, `false`, `null` |
//!
//! Anything else (`b'..'`, `datetime.datetime(..)`, an unterminated string, trailing text) is
//! an error naming the byte offset.

use serde_json::{Map, Number, Value};

/// Deepest nesting read; deeper payloads are refused anyway (the event limit is 64 levels).
const MAX_DEPTH: usize = 128;

/// Why a text is not a Python literal this reader takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Python literal at byte {offset}: {reason}")]
pub struct LiteralError {
    pub offset: usize,
    pub reason: String,
}

/// Reads one Python literal (surrounding whitespace allowed) as JSON.
pub fn parse(text: &str) -> Result<Value, LiteralError> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = reader.value(0)?;
    reader.skip_space();
    if reader.at != reader.bytes.len() {
        return Err(reader.error("text after the literal"));
    }
    Ok(value)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, reason: impl Into<String>) -> LiteralError {
        LiteralError {
            offset: self.at,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, LiteralError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.skip_space();
        match self.peek() {
            None => Err(self.error("unexpected end")),
            Some(b'{') => self.braces(depth),
            Some(b'[') => self.sequence(b']', depth).map(Value::Array),
            Some(b'(') => self.sequence(b')', depth).map(Value::Array),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(),
            Some(_) => self.word(),
        }
    }

    /// `[a, b]` or `(a, b)` (a trailing comma allowed); the opening bracket is next.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Value>, LiteralError> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            if !self.eat(b',') {
                return if self.eat(close) {
                    Ok(items)
                } else {
                    Err(self.error(format!("expected ',' or '{}'", close as char)))
                };
            }
        }
    }

    /// A dict, or a set (`{a, b}`), decided by what follows the first item.
    fn braces(&mut self, depth: usize) -> Result<Value, LiteralError> {
        self.at += 1;
        if self.eat(b'}') {
            return Ok(Value::Object(Map::new()));
        }
        let first = self.value(depth + 1)?;
        if !self.eat(b':') {
            // A set: the rest are plain items.
            let mut items = vec![first];
            loop {
                if !self.eat(b',') {
                    return if self.eat(b'}') {
                        Ok(Value::Array(items))
                    } else {
                        Err(self.error("expected ',' or '}'"))
                    };
                }
                if self.eat(b'}') {
                    return Ok(Value::Array(items));
                }
                items.push(self.value(depth + 1)?);
            }
        }
        let mut map = Map::new();
        let mut key = first;
        loop {
            let name = self.key_text(key)?;
            let value = self.value(depth + 1)?;
            // Python keeps the last of repeated keys; so does this.
            map.insert(name, value);
            if !self.eat(b',') {
                return if self.eat(b'}') {
                    Ok(Value::Object(map))
                } else {
                    Err(self.error("expected ',' or '}'"))
                };
            }
            if self.eat(b'}') {
                return Ok(Value::Object(map));
            }
            key = self.value(depth + 1)?;
            if !self.eat(b':') {
                return Err(self.error("expected ':' after a dict key"));
            }
        }
    }

    /// A dict key as `json.dumps` writes it: strings as they are, numbers and constants as
    /// their JSON text; containers are refused (Python cannot have them as keys either).
    fn key_text(&self, key: Value) -> Result<String, LiteralError> {
        match key {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Ok("null".into()),
            Value::Array(_) | Value::Object(_) => {
                Err(self.error("a dict key must be a string, number, True, False or None"))
            }
        }
    }

    fn word(&mut self) -> Result<Value, LiteralError> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.at += 1;
        }
        match &self.text[start..self.at] {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::Null),
            "set" if self.eat(b'(') && self.eat(b')') => Ok(Value::Array(Vec::new())),
            "inf" | "nan" => {
                self.at = start;
                Err(self.error("inf and nan have no JSON form"))
            }
            "" => {
                self.at = start;
                Err(self.error(format!(
                    "unexpected character {:?}",
                    self.text[start..].chars().next().unwrap_or(' ')
                )))
            }
            other => {
                self.at = start;
                Err(self.error(format!("{other:?} is not a literal")))
            }
        }
    }

    fn number(&mut self) -> Result<Value, LiteralError> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'))
        {
            // A sign is only part of the number at its start or right after an exponent mark.
            if matches!(self.peek(), Some(b'-' | b'+'))
                && self.at != start
                && !matches!(self.bytes[self.at - 1], b'e' | b'E')
            {
                break;
            }
            self.at += 1;
        }
        let raw = &self.text[start..self.at];
        let text: String = raw.chars().filter(|c| *c != '_').collect();
        let unsigned = text.trim_start_matches(['-', '+']);
        if unsigned.chars().all(|c| c.is_ascii_digit()) && !unsigned.is_empty() {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::Number(n.into()));
            }
            if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
                return Ok(Value::Number(n.into()));
            }
            self.at = start;
            return Err(self.error(format!("integer {raw} does not fit in 64 bits")));
        }
        let float: f64 = text.parse().map_err(|_| LiteralError {
            offset: start,
            reason: format!("{raw:?} is not a number"),
        })?;
        Number::from_f64(float)
            .map(Value::Number)
            .ok_or(LiteralError {
                offset: start,
                reason: "inf and nan have no JSON form".into(),
            })
    }

    /// A `'...'` or `"..."` string with Python's escapes; the quote is next.
    fn string(&mut self) -> Result<String, LiteralError> {
        let quote = self.bytes[self.at];
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote or backslash as it is (it is valid UTF-8).
            let run_end = self.bytes[self.at..]
                .iter()
                .position(|&b| b == quote || b == b'\\' || b == b'\n')
                .map(|p| self.at + p)
                .ok_or_else(|| LiteralError {
                    offset: start,
                    reason: "unterminated string".into(),
                })?;
            out.push_str(&self.text[self.at..run_end]);
            self.at = run_end;
            match self.bytes[self.at] {
                b'\n' => {
                    return Err(LiteralError {
                        offset: start,
                        reason: "unterminated string".into(),
                    });
                }
                b'\\' => self.escape(&mut out)?,
                _ => {
                    self.at += 1;
                    return Ok(out);
                }
            }
        }
    }

    /// One escape; the backslash is next.
    fn escape(&mut self, out: &mut String) -> Result<(), LiteralError> {
        let start = self.at;
        self.at += 1;
        let Some(kind) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.at += 1;
        let simple = match kind {
            b'\n' => Some(None),
            b'\\' => Some(Some('\\')),
            b'\'' => Some(Some('\'')),
            b'"' => Some(Some('"')),
            b'a' => Some(Some('\u{7}')),
            b'b' => Some(Some('\u{8}')),
            b'f' => Some(Some('\u{c}')),
            b'n' => Some(Some('\n')),
            b'r' => Some(Some('\r')),
            b't' => Some(Some('\t')),
            b'v' => Some(Some('\u{b}')),
            _ => None,
        };
        if let Some(c) = simple {
            out.extend(c);
            return Ok(());
        }
        let code = match kind {
            b'x' => self.hex(2)?,
            b'u' => self.hex(4)?,
            b'U' => self.hex(8)?,
            b'0'..=b'7' => {
                let mut code = u32::from(kind - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            self.at += 1;
                        }
                        _ => break,
                    }
                }
                code
            }
            // Python keeps an unknown escape as it is, backslash included.
            _ => {
                self.at = start + 1;
                out.push('\\');
                return Ok(());
            }
        };
        let c = char::from_u32(code).ok_or(LiteralError {
            offset: start,
            reason: format!("escape of U+{code:X}, which is not a character (a lone surrogate?)"),
        })?;
        out.push(c);
        Ok(())
    }

    fn hex(&mut self, digits: usize) -> Result<u32, LiteralError> {
        let end = self.at + digits;
        let text = self
            .text
            .get(self.at..end)
            .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error(format!("expected {digits} hex digits")))?;
        self.at = end;
        u32::from_str_radix(text, 16).map_err(|_| self.error("hex escape out of range"))
    }
}

#[cfg(test)]
mod tests;
