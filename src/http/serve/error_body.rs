//! JSON bodies for hyper's own errors. hyper answers a request it cannot parse (bad request
//! line, too many or too large headers, URL too long) itself, with an empty body and before
//! any handler runs. Those answers are recognised on their way out (the only responses without
//! a `content-type`, status 400/414/431, `content-length: 0`) and given a JSON body like every
//! other error. This depends on the shape of hyper's output; the tests below and
//! `tests/api/bad_input.rs` pin it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's writer that replaces hyper's empty error replies with JSON ones.
#[derive(Debug)]
pub(crate) struct ErrorBodies<T> {
    inner: T,
    /// The JSON version of one of hyper's error replies, being written in place of the
    /// original (`written` bytes of it so far), and the original's length to report.
    rewrite: Option<Rewrite>,
}

#[derive(Debug)]
struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    original_len: usize,
}

impl<T> ErrorBodies<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            rewrite: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> ErrorBodies<T> {
    /// Writes the rest of a rewritten error reply; `Ready(Ok(original length))` when done.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Self { inner, rewrite } = self;
        loop {
            let Some(current) = rewrite else {
                unreachable!("only called while a rewrite is in progress")
            };
            if current.written == current.bytes.len() {
                let original_len = current.original_len;
                *rewrite = None;
                return Poll::Ready(Ok(original_len));
            }
            let n =
                ready!(Pin::new(&mut *inner).poll_write(cx, &current.bytes[current.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            current.written += n;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorBodies<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none()
            && let Some(bytes) = json_error_reply(buf)
        {
            this.rewrite = Some(Rewrite {
                bytes,
                written: 0,
                original_len: buf.len(),
            });
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty());
        if this.rewrite.is_some() || first.is_some_and(|b| json_error_reply(b).is_some()) {
            let first = first.map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// If `head` is one of hyper's automatic error replies (a whole response head with status
/// 400, 414 or 431, no `content-type` and `content-length: 0`), the same reply with a JSON
/// body that names the problem.
fn json_error_reply(head: &[u8]) -> Option<Vec<u8>> {
    // Cheap tests first: this runs on every write. hyper's error heads are short, start with
    // a 4xx status line and end the buffer.
    const MAX_HEAD: usize = 512;
    if head.len() > MAX_HEAD || !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let header_end = text.find("\r\n\r\n")?;
    if header_end + 4 != text.len() {
        return None;
    }
    let message = match rest.get(..3)? {
        "400" => "bad request: the request line or a header could not be parsed",
        "414" => "the request URL is too long",
        "431" => {
            "the request headers are too large or too many (at most 100 headers, 64 KiB in all)"
        }
        _ => return None,
    };
    let mut lines = text[..header_end].split("\r\n");
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    let lower = |h: &&str| h.to_ascii_lowercase();
    if headers
        .iter()
        .any(|h| lower(h).starts_with("content-type:"))
        || !headers.iter().any(|h| lower(h) == "content-length: 0")
    {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut reply = format!("{status_line}\r\ncontent-type: application/json\r\n");
    for header in headers.iter().filter(|h| {
        let h = lower(h);
        !h.starts_with("content-length:") && !h.starts_with("connection:")
    }) {
        reply.push_str(header);
        reply.push_str("\r\n");
    }
    reply.push_str(&format!(
        "connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    Some(reply.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_empty_error_replies_get_a_json_body() {
        let reply = json_error_reply(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
        )
        .unwrap();
        let reply = String::from_utf8(reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("date: x"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("headers"));
    }

    #[test]
    fn our_own_replies_are_left_alone() {
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nextra",
            b"{\"not\": \"a head\"}",
        ] {
            assert!(json_error_reply(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }
}
