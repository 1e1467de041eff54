//! Server-Sent Events, both ways: the framing `GET /events/stream` writes, and the one parser
//! the tools (`consume`), the tests and the benchmark read it with.
//!
//! A message is lines ending in a blank line: `id: <cursor>` and `data: <one event's JSON>`, an
//! `id` alone (where a stream of every topic starts), or a comment (`: keep-alive`). The
//! service writes each field on one line, so a message has at most one `data` line.

/// The comment a quiet stream sends so proxies and clients see it is alive.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Appends one event message to `frame`: `id: <id>`, then `data: ` with what `data` writes
/// (one line of JSON), then the blank line.
pub fn write_event(frame: &mut Vec<u8>, id: &str, data: impl FnOnce(&mut Vec<u8>)) {
    frame.extend_from_slice(b"id: ");
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    data(frame);
    frame.extend_from_slice(b"\n\n");
}

/// A message holding only an `id`: a client records it without dispatching an event.
pub fn id_only(id: &str) -> String {
    format!("id: {id}\n\n")
}

/// One message as read: the fields it had (`comment` is the text after `:`, trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Message<'a> {
    pub id: Option<&'a str>,
    pub data: Option<&'a str>,
    pub comment: Option<&'a str>,
}

/// A message that is not UTF-8 (the service only sends UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stream message is not UTF-8")]
pub struct NotUtf8;

/// Reads messages out of a stream's chunks, however the chunks split them (mid-line, or inside
/// a multi-byte character).
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already returned as messages; dropped at the next `push`.
    consumed: usize,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in the next chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole message, or `None` until more chunks come.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, NotUtf8> {
        let rest = &self.buffer[self.consumed..];
        let Some(end) = rest.windows(2).position(|w| w == b"\n\n") else {
            return Ok(None);
        };
        let start = self.consumed;
        self.consumed += end + 2;
        let text = std::str::from_utf8(&self.buffer[start..start + end]).map_err(|_| NotUtf8)?;
        let mut message = Message::default();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix(':') {
                message.comment = Some(comment.trim());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => message.id = Some(value),
                "data" => message.data = Some(value),
                _ => {}
            }
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_whatever_the_chunks() {
        let mut stream = id_only("2s").into_bytes();
        write_event(&mut stream, "7", |out| {
            out.extend_from_slice(r#"{"t":"ü"}"#.as_bytes())
        });
        stream.extend_from_slice(KEEP_ALIVE);
        for split in 0..stream.len() {
            let mut parser = Parser::new();
            let mut seen = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                parser.push(chunk);
                while let Some(message) = parser.next_message().unwrap() {
                    seen.push(format!("{message:?}"));
                }
            }
            assert_eq!(
                seen,
                [
                    format!(
                        "{:?}",
                        Message {
                            id: Some("2s"),
                            ..Message::default()
                        }
                    ),
                    format!(
                        "{:?}",
                        Message {
                            id: Some("7"),
                            data: Some(r#"{"t":"ü"}"#),
                            comment: None
                        }
                    ),
                    format!(
                        "{:?}",
                        Message {
                            comment: Some("keep-alive"),
                            ..Message::default()
                        }
                    ),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_message_that_is_not_utf8_is_an_error_and_the_next_one_still_reads() {
        let mut parser = Parser::new();
        parser.push(b"data: \xff\n\nid: 1\n\n");
        assert_eq!(parser.next_message(), Err(NotUtf8));
        assert_eq!(parser.next_message().unwrap().unwrap().id, Some("1"));
    }
}
