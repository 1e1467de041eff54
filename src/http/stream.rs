//! `GET /events/stream?topic=T` (Server-Sent Events): every committed event of a topic, once,
//! in `seq` order, from `after` (or `Last-Event-ID`) on, live.
//!
//! One task per subscriber reads the topic's pages from the store and hands them to the
//! connection through a channel of [`BUFFERED_FRAMES`] frames of at most [`FRAME_BYTES`]: that
//! bounds the memory a subscriber holds. When it has caught up it waits for the partition's next
//! commit (the worker marks each one; on PostgreSQL the store also hears other replicas'), or
//! sends `: keep-alive` when the stream has been quiet. A subscriber that does not take a frame
//! within the write timeout is disconnected (it resumes with `Last-Event-ID`); subscribers only
//! read, so none of this slows publishing. Shutdown ends every stream.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::{AppState, query};
use crate::ingest::partition_of;
use crate::store::PageLimit;

/// Frames waiting for a subscriber's connection.
const BUFFERED_FRAMES: usize = 2;
/// Most bytes of events in one frame (a frame always holds at least one event).
const FRAME_BYTES: usize = 64 * 1024;
/// Events read from the store per frame, at most.
const FRAME_EVENTS: usize = 1000;

/// Open a live stream of a topic's events
///
/// Server-Sent Events: each committed event is one message, `id: <seq>` and `data: <the event
/// JSON with seq>`, in `seq` order, from after `after` (or the `Last-Event-ID` header; `after`
/// wins), or from the first stored event. A `: keep-alive` comment while idle. Resuming from
/// the last `id` received delivers every later event exactly once, also across restarts.
#[utoipa::path(get, path = "/events/stream", tag = "events",
    params(super::openapi::StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last `id` received; the stream resumes after it")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A missing topic, or a bad `after` or `Last-Event-ID`", body = super::error::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = super::error::ErrorBody),
        (status = 403, description = "The token lacks the read scope", body = super::error::ErrorBody),
        (status = 503, description = "Shutting down", body = super::error::ErrorBody),
    ))]
pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Read)?;
    let params = query::parse(raw.as_deref(), &["topic", "after"])?;
    let topic = params.get("topic").cloned().ok_or_else(|| {
        ApiError::BadRequest(
            "topic is required: GET /events/stream?topic=<name> (a stream of every topic is \
             not available yet; page through GET /events for that)"
                .into(),
        )
    })?;
    if topic.is_empty() {
        return Err(ApiError::BadRequest("topic must not be empty".into()));
    }
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let after = match params.get("after").or(last_event_id.as_ref()) {
        None => 0,
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "after / Last-Event-ID must be a seq (a number >= 0), got {raw:?}"
                ))
            })?,
    };
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let (frames, rx) = mpsc::channel::<Bytes>(BUFFERED_FRAMES);
    tokio::spawn(feed(state.clone(), topic, after, frames));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell proxies (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Why a subscriber's feed ended.
enum Ended {
    /// The subscriber went away, or shutdown began.
    Closed,
    /// It did not take a frame within the write timeout.
    Slow,
}

/// Reads and hands over the topic's events until the subscriber goes away, is too slow, the
/// store fails (the subscriber resumes), or shutdown begins.
async fn feed(state: Arc<AppState>, topic: String, mut after: i64, frames: mpsc::Sender<Bytes>) {
    let metrics = state.metrics.streams.clone();
    metrics.subscribers.increment(1.0);
    let partition = partition_of(&topic, state.store.partitions());
    let mut commits = state.ingest.partitions()[partition].commits();
    let stall = state.limits.stream_write_timeout;
    let keep_alive = state.limits.stream_keep_alive;
    let limit = PageLimit {
        max_events: FRAME_EVENTS,
        max_bytes: FRAME_BYTES,
    };
    // After a wake-up, the commit that caused it: its time measures delivery lag.
    let mut woken_by: Option<std::time::Instant> = None;
    let ended = loop {
        // Marked seen before reading, so a commit during the read wakes the next wait.
        commits.borrow_and_update();
        let events = match state
            .store
            .topic_page(partition, &topic, after, limit)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, topic, "stream read failed; ending the stream");
                break Ended::Closed;
            }
        };
        if let Some(last) = events.last() {
            after = last.seq;
            let mut frame = String::new();
            for event in &events {
                let data = serde_json::to_string(event).unwrap_or_default();
                let _ = write!(frame, "id: {}\ndata: {data}\n\n", event.seq);
            }
            match hand_over(&frames, Bytes::from(frame), stall).await {
                Ok(()) => {
                    metrics.delivered.increment(events.len() as u64);
                    if let Some(at) = woken_by.take() {
                        let lag = at.elapsed().as_secs_f64();
                        metrics.lag.record_many(lag, events.len());
                    }
                    continue;
                }
                Err(ended) => break ended,
            }
        }
        tokio::select! {
            changed = commits.changed() => match changed {
                Ok(()) => woken_by = Some(commits.borrow().at),
                Err(_) => break Ended::Closed,
            },
            () = tokio::time::sleep(keep_alive) => {
                if let Err(ended) = hand_over(&frames, Bytes::from_static(b": keep-alive\n\n"), stall).await {
                    break ended;
                }
            }
            () = state.shutdown_begun() => break Ended::Closed,
            () = frames.closed() => break Ended::Closed,
        }
    };
    if matches!(ended, Ended::Slow) {
        metrics.slow_disconnects.increment(1);
        tracing::info!(
            topic,
            after,
            "stream subscriber too slow; disconnected (it can resume)"
        );
    }
    metrics.subscribers.decrement(1.0);
}

/// Hands `frame` to the connection, waiting at most `stall` for room. A subscriber whose
/// connection is closed while a frame waits for room was not reading (the connection's own
/// write timeout closes it at the same bound): that, too, is a slow subscriber.
async fn hand_over(
    frames: &mpsc::Sender<Bytes>,
    frame: Bytes,
    stall: Duration,
) -> Result<(), Ended> {
    let frame = match frames.try_send(frame) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(Ended::Closed),
        Err(mpsc::error::TrySendError::Full(frame)) => frame,
    };
    match tokio::time::timeout(stall, frames.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Ended::Slow),
    }
}
