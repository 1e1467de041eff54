//! `GET /events/stream` (Server-Sent Events): every committed event of a topic (`?topic=T`), or
//! of every topic, once, in per-topic `seq` order, from `after` (or `Last-Event-ID`) on, live.
//! The handler parses and authorises; the subscriber's task is `read::follow`.

use std::convert::Infallible;
use std::sync::Arc;

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
use crate::read::cursor::parse_cursor;
use crate::read::follow::{BUFFERED_FRAMES, FeedSettings, Subscriber, feed};
use crate::read::target::Follow;
use crate::read::{check_not_ahead, positions_not_ahead};

/// Open a live stream of one topic's events, or of every topic's
///
/// Server-Sent Events: each committed event is one message, `id: <cursor>` and `data: <the
/// event JSON with seq>`. With `topic`, the cursor is the event's `seq`; without, it is an
/// opaque string (one position per partition) and the stream begins with a message holding
/// only the `id` of its starting point. Events come in per-topic `seq` order, from after `after`
/// (or the `Last-Event-ID` header; `after` wins), or from the first stored event; without
/// `topic`, `after=now` starts with the events committed from now on. A `: keep-alive` comment
/// while idle. Resuming from the last `id` received delivers every later event exactly once,
/// also across restarts.
#[utoipa::path(get, path = "/events/stream", tag = "events",
    params(super::params::StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last `id` received; the stream resumes after it")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "An empty topic, or a bad `after` or `Last-Event-ID`", body = super::error::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = super::error::ErrorBody),
        (status = 403, description = "The token lacks the read scope", body = super::error::ErrorBody),
        (status = 409, description = "The cursor is ahead of the store (e.g. a restored backup); `last` names the store's last position", body = super::error::ErrorBody),
        (status = 503, description = "Shutting down, every reader slot (`--max-readers`) is taken, or the store could not be read; see Retry-After", body = super::error::ErrorBody),
    ))]
pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Read)?;
    let params = query::parse(raw.as_deref(), &["topic", "after"])?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let after = params.get("after").or(last_event_id.as_ref());
    let partitions = state.store.partitions();
    let follow = match params.get("topic") {
        Some(topic) if topic.is_empty() => {
            return Err(ApiError::BadRequest("topic must not be empty".into()));
        }
        Some(topic) => Follow::Topic {
            partition: partition_of(topic, partitions),
            topic: topic.clone(),
            after: after.map_or(Ok(0), |raw| query::seq(raw.trim(), "after / Last-Event-ID"))?,
        },
        None => Follow::All {
            after: match after.map(|raw| raw.trim()) {
                None => vec![0; partitions],
                Some("now") => state.store.last_positions().await?,
                Some(raw) => {
                    let after =
                        parse_cursor(raw, partitions).ok_or_else(|| bad_cursor(raw, partitions))?;
                    positions_not_ahead(state.store.as_ref(), after).await?
                }
            },
        },
    };
    if let Follow::Topic {
        topic,
        partition,
        after,
    } = &follow
    {
        check_not_ahead(state.store.as_ref(), *partition, topic, *after).await?;
    }
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    // A reader slot for the stream's life (Guarantee 7): past --max-readers, 503 at once.
    let slot = state.readers.enter()?;
    let (frames, rx) = mpsc::channel::<Bytes>(BUFFERED_FRAMES);
    let subscriber = Subscriber::new(
        follow,
        state.store.clone(),
        state.ingest.partitions(),
        state.stream_budget.clone(),
        FeedSettings {
            write_timeout: state.limits.stream_write_timeout,
            keep_alive: state.limits.stream_keep_alive,
            max_body_bytes: state.limits.max_body_bytes,
        },
        state.metrics.streams.clone(),
        state.shutdown_signal(),
    );
    // Reads and serialisation at a lower priority than publishing (see `low_priority`).
    state.low_priority.spawn(async move {
        feed(subscriber, frames).await;
        drop(slot);
    });
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

/// 400 for an `after` / `Last-Event-ID` that is not a cursor of the stream of every topic.
fn bad_cursor(raw: &str, partitions: usize) -> ApiError {
    ApiError::BadRequest(format!(
        "after / Last-Event-ID must be `now` or an id this stream sent (without topic, an id \
         names one position per partition, {partitions} here), got {}",
        query::shown(raw)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_cursor_is_quoted_cut_short() {
        let huge = "9".repeat(40_000);
        let message = super::bad_cursor(&huge, 4).to_string();
        assert!(
            message.len() < 400,
            "a 40 KB id is not echoed whole: {} bytes",
            message.len()
        );
        assert!(message.contains("(40000 bytes)"), "{message}");
    }
}
