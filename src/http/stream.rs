//! `GET /events/stream` (Server-Sent Events): every committed event of a topic (`?topic=T`), or
//! of every topic, once, in per-topic `seq` order, from `after` (or `Last-Event-ID`) on, live.
//!
//! One task per subscriber reads pages from the store and hands them to the connection through
//! a channel of [`BUFFERED_FRAMES`] frames of at most [`FRAME_BYTES`]: that bounds the memory a
//! subscriber holds. When it has caught up it waits for the next commit of a partition it
//! follows (the worker marks each one; on PostgreSQL the store also hears other replicas'), or
//! sends `: keep-alive` when the stream has been quiet. A subscriber that does not take a frame
//! within the write timeout is disconnected (it resumes with `Last-Event-ID`); subscribers only
//! read, so none of this slows publishing. Shutdown ends every stream.
//!
//! A topic's stream resumes from a `seq`. The stream of every topic resumes from a cursor of one
//! position per partition (each event's place in its partition's commit order, see
//! `store::StoredEvent::position`): exact, whatever the interleaving of topics, and the same on
//! every replica of a PostgreSQL store.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::stream_cursor::{encode_cursor, parse_cursor, parse_seq};
use super::{AppState, query};
use crate::budget::Charge;
use crate::ingest::{CommitMark, TopicWait, partition_of};
use crate::store::{PageLimit, StoredEvent};

/// Frames waiting for a subscriber's connection.
const BUFFERED_FRAMES: usize = 2;
/// Most bytes of events in one frame (a frame always holds at least one event).
const FRAME_BYTES: usize = 64 * 1024;
/// Events read from the store per frame, at most.
const FRAME_EVENTS: usize = 1000;

/// What one read of a subscriber is charged on the stream budget before it runs: the events
/// read (at most [`FRAME_BYTES`] plus one event, which is at most a body) and the frame built
/// from them. Shrunk to the frame's size once built; the frame carries that charge until hyper
/// has written it.
pub fn read_reservation(max_body_bytes: usize) -> usize {
    2 * (FRAME_BYTES + max_body_bytes)
}

/// A frame's bytes with their charge on the stream budget: given back when hyper drops the
/// frame after writing it (or the subscriber goes away).
struct ChargedFrame {
    bytes: Vec<u8>,
    _charge: Charge,
}

impl AsRef<[u8]> for ChargedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

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
            after: after.map_or(Ok(0), |raw| parse_seq(raw))?,
        },
        None => Follow::All {
            after: match after.map(|raw| raw.trim()) {
                None => vec![0; partitions],
                Some("now") => state
                    .store
                    .last_positions()
                    .await
                    .map_err(super::read_failed)?,
                Some(raw) => positions_not_ahead(&state, parse_cursor(raw, partitions)?).await?,
            },
        },
    };
    if let Follow::Topic {
        topic,
        partition,
        after,
    } = &follow
    {
        super::events::check_not_ahead(&state, *partition, topic, *after).await?;
    }
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    // A reader slot for the stream's life (Guarantee 7): past --max-readers, 503 at once.
    let slot = state.readers.enter()?;
    let (frames, rx) = mpsc::channel::<Bytes>(BUFFERED_FRAMES);
    // Reads and serialisation at a lower priority than publishing (see `low_priority`).
    super::low_priority::spawn(async move {
        feed(state.clone(), follow, frames).await;
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

/// Guarantee 9 for the stream of every topic: `after` must not be past the store's positions.
async fn positions_not_ahead(state: &AppState, after: Vec<i64>) -> Result<Vec<i64>, ApiError> {
    let last = state
        .store
        .last_positions()
        .await
        .map_err(super::read_failed)?;
    if after.iter().zip(&last).any(|(a, l)| a > l) {
        return Err(ApiError::CursorAhead {
            last: encode_cursor(&last),
        });
    }
    Ok(after)
}

/// What a subscriber follows, and how far it has got.
enum Follow {
    /// One topic (owned by `partition`), after `seq` `after`.
    Topic {
        topic: String,
        partition: usize,
        after: i64,
    },
    /// Every topic, after a position per partition.
    All { after: Vec<i64> },
}

impl Follow {
    fn partitions(&self) -> Vec<usize> {
        match self {
            Self::Topic { partition, .. } => vec![*partition],
            Self::All { after } => (0..after.len()).collect(),
        }
    }

    /// The next page of `partition` after where the subscriber is.
    async fn read(
        &self,
        state: &AppState,
        partition: usize,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, crate::store::StoreError> {
        match self {
            Self::Topic { topic, after, .. } => {
                state
                    .store
                    .topic_page(partition, topic, *after, limit)
                    .await
            }
            Self::All { after } => {
                state
                    .store
                    .position_page(partition, after[partition], limit)
                    .await
            }
        }
    }

    /// The page's messages; moves the subscriber past them. Each event is serialised straight
    /// into the frame (no copy of it in between).
    fn frame(&mut self, partition: usize, events: &[StoredEvent]) -> Vec<u8> {
        use std::io::Write as _;
        let bytes: usize = events.iter().map(|e| e.json_bytes() + 64).sum();
        let mut frame = Vec::with_capacity(bytes);
        for event in events {
            let id = match self {
                Self::Topic { after, .. } => {
                    *after = event.seq;
                    event.seq.to_string()
                }
                Self::All { after } => {
                    after[partition] = event.position;
                    encode_cursor(after)
                }
            };
            let _ = write!(frame, "id: {id}\ndata: ");
            // Serialising a stored event cannot fail (its payload is already JSON).
            let _ = serde_json::to_writer(&mut frame, event);
            frame.extend_from_slice(b"\n\n");
        }
        frame
    }

    /// The message a stream begins with: the id of its starting point, so a client that
    /// disconnects before the first event still resumes exactly (EventSource records an `id`
    /// without dispatching an event).
    fn opening(&self) -> Option<Bytes> {
        match self {
            Self::Topic { .. } => None,
            Self::All { after } => Some(Bytes::from(format!("id: {}\n\n", encode_cursor(after)))),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Topic { topic, after, .. } => format!("topic {topic:?} after seq {after}"),
            Self::All { after } => format!("every topic after {}", encode_cursor(after)),
        }
    }
}

/// Why a subscriber's feed ended.
enum Ended {
    /// The subscriber went away, or shutdown began.
    Closed,
    /// It did not take a frame within the write timeout.
    Slow,
    /// The stream budget stayed full for the write timeout (other subscribers hold it).
    NoRoom,
}

/// Reads and hands over the events the subscriber follows until it goes away, is too slow, the
/// store fails (the subscriber resumes), or shutdown begins. Partitions with news are read in
/// turn, a page each.
async fn feed(state: Arc<AppState>, mut follow: Follow, frames: mpsc::Sender<Bytes>) {
    let metrics = state.metrics.streams.clone();
    metrics.subscribers.increment(1.0);
    let handles = state.ingest.partitions();
    let mut commits: Vec<(usize, watch::Receiver<CommitMark>)> = follow
        .partitions()
        .into_iter()
        .map(|p| (p, handles[p].commits()))
        .collect();
    // A topic's stream wakes on its topic's commits only (the partition's marks still time
    // the delivery lag); the stream of every topic on every partition's.
    let mut topic_wait: Option<TopicWait> = match &follow {
        Follow::Topic {
            topic, partition, ..
        } => Some(handles[*partition].topic_commits(topic)),
        Follow::All { .. } => None,
    };
    let stall = state.limits.stream_write_timeout;
    let keep_alive = state.limits.stream_keep_alive;
    let limit = PageLimit {
        max_events: FRAME_EVENTS,
        max_bytes: FRAME_BYTES,
    };
    let reservation = read_reservation(state.limits.max_body_bytes);
    // Indices into `commits` that may have events to read; at first, all of them.
    let mut pending: VecDeque<usize> = (0..commits.len()).collect();
    // After a wake-up, the commit that caused it: its time measures delivery lag.
    let mut woken_by: Vec<Option<Instant>> = vec![None; commits.len()];
    let opened = match follow.opening() {
        Some(frame) => hand_over(&frames, frame, stall).await,
        None => Ok(()),
    };
    let ended = loop {
        if let Err(ended) = opened {
            break ended;
        }
        if let Some(i) = pending.pop_front() {
            let (partition, marks) = &mut commits[i];
            // Marked seen before reading, so a commit during the read wakes the next wait.
            marks.borrow_and_update();
            if let Some(wait) = &mut topic_wait {
                wait.mark_seen();
            }
            // Both queued frames still unread: the subscriber is behind. If its connection is
            // gone by the time the next frame is ready, the write timeout cut it off (a slow
            // subscriber), however the close reaches this task.
            let behind = frames.capacity() == 0;
            let as_slow = |ended: Ended| match ended {
                Ended::Closed if behind => Ended::Slow,
                other => other,
            };
            // Room for the read and its frame first (Guarantee 7: stream memory bounded in
            // bytes, in total): a subscriber waits for it, never allocates past it.
            let Ok(mut charge) = state.stream_budget.charge(reservation, stall).await else {
                break Ended::NoRoom;
            };
            let events = match follow.read(&state, *partition, limit).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, stream = follow.describe(), "stream read failed; ending the stream");
                    break Ended::Closed;
                }
            };
            if events.is_empty() {
                continue;
            }
            let delivered = events.len();
            let frame = follow.frame(*partition, &events);
            drop(events);
            // Events stored under a larger --max-body-bytes can exceed the reservation.
            if charge.grow_to(frame.len(), stall).await.is_err() {
                break Ended::NoRoom;
            }
            charge.shrink_to(frame.len());
            let frame = Bytes::from_owner(ChargedFrame {
                bytes: frame,
                _charge: charge,
            });
            if let Err(ended) = hand_over(&frames, frame, stall).await {
                break as_slow(ended);
            }
            metrics.delivered.increment(delivered as u64);
            if let Some(at) = woken_by[i].take() {
                metrics
                    .lag
                    .record_many(at.elapsed().as_secs_f64(), delivered);
            }
            // More may follow: read it again after the others' turns.
            pending.push_back(i);
            continue;
        }
        tokio::select! {
            () = async { topic_wait.as_mut().expect("checked by the branch condition").changed().await }, if topic_wait.is_some() => {
                woken_by[0] = Some(commits[0].1.borrow().at);
                pending.push_back(0);
            }
            woken = next_commit(&mut commits), if topic_wait.is_none() => match woken {
                Some(first) => {
                    for (i, (_, marks)) in commits.iter().enumerate() {
                        if i == first || marks.has_changed().unwrap_or(false) {
                            woken_by[i] = Some(marks.borrow().at);
                            pending.push_back(i);
                        }
                    }
                }
                None => break Ended::Closed,
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
    match ended {
        Ended::Slow => {
            metrics.slow_disconnects.increment(1);
            tracing::info!(
                stream = follow.describe(),
                "stream subscriber too slow; disconnected (it can resume)"
            );
        }
        Ended::NoRoom => {
            metrics.slow_disconnects.increment(1);
            tracing::info!(
                stream = follow.describe(),
                "stream memory (--max-stream-mib) stayed full; subscriber disconnected (it can resume)"
            );
        }
        Ended::Closed => {}
    }
    metrics.subscribers.decrement(1.0);
}

/// Waits for a commit on any of the partitions; returns the index of one that committed
/// (`None`: the service is stopping).
async fn next_commit(commits: &mut [(usize, watch::Receiver<CommitMark>)]) -> Option<usize> {
    let waits = commits
        .iter_mut()
        .map(|(_, marks)| Box::pin(marks.changed()));
    let (result, index, _) = futures_util::future::select_all(waits).await;
    result.ok().map(|()| index)
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
