//! Replies to requests whose body was left unread say `Connection: close`.
//!
//! A handler may answer before reading the body (401, 413 by `Content-Length`, 415, 503 for a
//! low disk or shutdown). hyper then closes the connection rather than read a body nobody
//! wants, but without saying so in the reply: a client with a connection pool may send its
//! next request on that connection and see a reset. [`Tracked`] records whether the body was
//! read to its end; [`close_if_unread`] marks the reply when it was not, so the client opens a
//! new connection instead.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

/// A request body that records when it has been read to its end.
pub(super) struct Tracked {
    inner: Incoming,
    read: Arc<AtomicBool>,
}

/// Whether a tracked body was read to its end.
#[derive(Clone)]
pub(super) struct ReadToEnd(Arc<AtomicBool>);

/// Wraps `request`'s body.
pub(super) fn track(request: Request<Incoming>) -> (Request<Tracked>, ReadToEnd) {
    let (parts, inner) = request.into_parts();
    let read = Arc::new(AtomicBool::new(inner.is_end_stream()));
    let flag = ReadToEnd(read.clone());
    (Request::from_parts(parts, Tracked { inner, read }), flag)
}

/// Adds `Connection: close` to `response` when its request's body was left unread.
pub(super) fn close_if_unread<B>(response: &mut Response<B>, body: &ReadToEnd) {
    if !body.0.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // The end: no more frames, or (with a Content-Length) the last bytes just arrived.
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
