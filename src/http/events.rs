//! `GET /events`: pages of stored events with a `Link: <...>; rel="next"` header.
//!
//! With `topic`, events come in ascending `seq` and `after` is a seq. Without it, events come
//! partition by partition, each ordered by (`topic`, `seq`), and `after` is an opaque cursor
//! `<partition>.<seq>.<hex of topic>` taken from the previous page's `Link`. Either way,
//! walking the pages returns every stored event exactly once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::{AppState, query, read_failed};
use crate::budget::Charge;
use crate::ingest::partition_of;
use crate::store::{PageLimit, StoredEvent};

/// Default and maximum page size.
pub const MAX_PAGE: usize = 10_000;
/// Longest long poll (`wait=`), in seconds.
const MAX_WAIT_SECS: u64 = 30;

/// `after` with a topic: a seq, 0 when absent.
fn parse_seq(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(0),
        Some(raw) => raw.parse::<i64>().ok().filter(|&s| s >= 0).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "after must be a seq (a number >= 0), got {}",
                super::query::shown(raw)
            ))
        }),
    }
}

/// Long poll: returns `true` once `topic` has an event after `after`; `false` when `wait` has
/// passed or shutdown began with none (the caller answers `[]` without reading again). Only
/// commits of `topic` wake it (see `ingest::TopicWait`), so idle polls of a quiet topic cost
/// a busy topic on the same partition nothing.
async fn wait_for_event(
    state: &AppState,
    topic: &str,
    after: i64,
    wait: Duration,
) -> Result<bool, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let partition = partition_of(topic, state.store.partitions());
    let mut commits = state.ingest.partitions()[partition].topic_commits(topic);
    let probe = PageLimit {
        max_events: 1,
        max_bytes: 1,
    };
    let mut first = true;
    loop {
        commits.mark_seen();
        let found = state
            .store
            .topic_page(partition, topic, after, probe)
            .await
            .map_err(read_failed)?;
        if !found.is_empty() {
            return Ok(true);
        }
        // Only a poll that would wait can be waiting for a cursor from the future.
        if std::mem::take(&mut first) {
            check_not_ahead(state, partition, topic, after).await?;
        }
        tokio::select! {
            () = commits.changed() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(false),
            () = state.shutdown_begun() => return Ok(false),
        }
    }
}

/// Guarantee 9: `after` on `topic` must not be past the topic's last `seq` (a reader resuming
/// against a restored backup would otherwise wait forever for events it already has). Read
/// only where a page came back empty or a wait or stream begins, so a valid cursor costs
/// nothing on the common path.
pub(super) async fn check_not_ahead(
    state: &AppState,
    partition: usize,
    topic: &str,
    after: i64,
) -> Result<(), ApiError> {
    if after == 0 {
        return Ok(());
    }
    let last = state
        .store
        .last_seq(partition, topic)
        .await
        .map_err(read_failed)?;
    if after > last {
        return Err(ApiError::CursorAhead {
            last: last.to_string(),
        });
    }
    Ok(())
}

/// Position after the last event of a page, across all topics.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    partition: usize,
    topic: String,
    seq: i64,
}

/// Read stored events
///
/// Pages of events. With `topic`: that topic's events in `seq` order, `after` a seq. Without:
/// every event, partition by partition, `after` an opaque cursor from the previous page's
/// `Link: <...>; rel="next"` header (absent on the last page).
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "list_events",
    params(super::params::EventsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = Vec<StoredEvent>,
            headers(("Link" = String, description = "`</events?...>; rel=\"next\"` while more events follow"))),
        (status = 400, description = "An unknown or malformed query parameter", body = super::error::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = super::error::ErrorBody),
        (status = 403, description = "The token lacks the read scope", body = super::error::ErrorBody),
        (status = 409, description = "`after` is ahead of the store (e.g. a restored backup); `last` names the store's last position", body = super::error::ErrorBody),
        (status = 503, description = "Too many reads in flight, (a long poll) every reader slot is taken, or the store could not be read; see Retry-After", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Read)?;
    let mut params = query::parse(raw.as_deref(), &["topic", "after", "limit", "wait"])?;
    let max_events = parse_limit(params.get("limit").map(String::as_str))?;
    if let Some(raw) = params.get("wait") {
        let wait = raw
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "wait must be whole seconds from 0 to {MAX_WAIT_SECS}, got {raw:?}"
                ))
            })?;
        let topic = params
            .get("topic")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::BadRequest("wait needs a topic (a long poll follows one topic)".into())
            })?;
        let after = parse_seq(params.get("after").map(String::as_str))?;
        // A reader slot for the wait (Guarantee 7): past --max-readers, 503 at once.
        let _reader = state.readers.enter()?;
        // Waits before taking any read budget, so idle long polls hold no page memory.
        if !wait_for_event(&state, topic, after, Duration::from_secs(wait)).await? {
            return Ok(charged_json(b"[]".to_vec(), state.read_budget.empty()));
        }
    }
    let limit = PageLimit {
        max_events: max_events + 1,
        max_bytes: state.limits.max_page_bytes,
    };
    // Held until the response is written: bounds the memory of all pages in flight.
    let mut charge = state
        .read_budget
        .charge(read_reservation(&state), state.limits.enqueue_timeout)
        .await
        .map_err(|_| ApiError::ReadsBusy)?;
    let (events, next) = match params.remove("topic") {
        Some(topic) => {
            if topic.is_empty() {
                return Err(ApiError::BadRequest("topic must not be empty".into()));
            }
            let after = parse_seq(params.get("after").map(String::as_str))?;
            let partition = partition_of(&topic, state.store.partitions());
            let mut events = state
                .store
                .topic_page(partition, &topic, after, limit)
                .await
                .map_err(read_failed)?;
            if events.is_empty() {
                check_not_ahead(&state, partition, &topic, after).await?;
            }
            let more = trim_page(&mut events, max_events, limit.max_bytes);
            let next = more.then(|| {
                let last = events.last().map_or(after, |e| e.seq);
                vec![
                    ("topic", topic),
                    ("after", last.to_string()),
                    ("limit", max_events.to_string()),
                ]
            });
            (events, next)
        }
        None => {
            let after = params
                .get("after")
                .map(|raw| Cursor::parse(raw))
                .transpose()?;
            if after
                .as_ref()
                .is_some_and(|c| c.partition >= state.store.partitions())
            {
                return Err(ApiError::BadRequest(
                    "after names a partition that does not exist".into(),
                ));
            }
            let mut rows = all_topics_page(&state, after.clone(), limit)
                .await
                .map_err(read_failed)?;
            if rows.is_empty()
                && let Some(cursor) = &after
            {
                check_not_ahead(&state, cursor.partition, &cursor.topic, cursor.seq).await?;
            }
            let more = trim_page(&mut rows, max_events, limit.max_bytes);
            let next = more.then(|| {
                let (partition, last) = rows.last().expect("a page that continues holds events");
                let cursor = Cursor {
                    partition: *partition,
                    topic: last.topic.clone(),
                    seq: last.seq,
                };
                vec![
                    ("after", cursor.encode()),
                    ("limit", max_events.to_string()),
                ]
            });
            (rows.into_iter().map(|(_, e)| e).collect(), next)
        }
    };

    let body = serde_json::to_vec(&events).map_err(|_| ApiError::Internal)?;
    drop(events);
    charge.shrink_to(body.len());
    let mut response = charged_json(body, charge);
    if let Some(params) = next {
        let query = serde_urlencoded::to_string(params).map_err(|_| ApiError::Internal)?;
        let link = format!("</events?{query}>; rel=\"next\"");
        let value = HeaderValue::from_str(&link).map_err(|_| ApiError::Internal)?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// Memory one page may take before it is serialised: the rows (up to the byte bound plus
/// one event that did not fit, which is at most a body's size) and their JSON.
fn read_reservation(state: &AppState) -> usize {
    2 * (state.limits.max_page_bytes + state.limits.max_body_bytes)
}

/// Cuts a page fetched with room for `max_events + 1` events (see [`PageLimit`]) to what the
/// client gets, and says whether more events may follow: the extra event exists, or the byte
/// bound ended the page (its last event, which crossed the bound, is left for the next page
/// unless it is the only one).
fn trim_page<T: AsPageEvent>(page: &mut Vec<T>, max_events: usize, max_bytes: usize) -> bool {
    let bytes: usize = page.iter().map(|e| e.event().json_bytes()).sum();
    let more = page.len() > max_events || bytes >= max_bytes;
    if page.len() > max_events || (bytes > max_bytes && page.len() > 1) {
        page.pop();
    }
    more
}

/// A page row: an event, alone or tagged with its partition.
trait AsPageEvent {
    fn event(&self) -> &StoredEvent;
}

impl AsPageEvent for StoredEvent {
    fn event(&self) -> &StoredEvent {
        self
    }
}

impl AsPageEvent for (usize, StoredEvent) {
    fn event(&self) -> &StoredEvent {
        &self.1
    }
}

/// A JSON response whose memory stays charged on the read budget until hyper has taken the
/// body for writing.
fn charged_json(body: Vec<u8>, charge: Charge) -> Response {
    use futures_util::StreamExt;
    let length = body.len();
    let chunk = futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(body))
    });
    // Polled once hyper wants more after the page (it has taken the page for writing, and for
    // a page larger than its write buffer, written most of it): the charge ends there.
    let release = futures_util::stream::once(async move {
        drop(charge);
        Ok(axum::body::Bytes::new())
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        Body::from_stream(chunk.chain(release)),
    )
        .into_response()
}

fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(MAX_PAGE) };
    raw.parse::<usize>()
        .ok()
        .filter(|l| (1..=MAX_PAGE).contains(l))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit must be a number from 1 to {MAX_PAGE}, got {raw:?}"
            ))
        })
}

/// Events across partitions after `after`, tagged with their partition, fetched with the
/// same rule as one partition's page: up to `limit.max_events`, ending with the event that
/// reaches `limit.max_bytes`.
async fn all_topics_page(
    state: &AppState,
    after: Option<Cursor>,
    limit: PageLimit,
) -> Result<Vec<(usize, StoredEvent)>, crate::store::StoreError> {
    let start = after.as_ref().map_or(0, |c| c.partition);
    let mut rows = Vec::new();
    let mut bytes = 0;
    for partition in start..state.store.partitions() {
        if rows.len() >= limit.max_events || bytes >= limit.max_bytes {
            break;
        }
        let position = after
            .as_ref()
            .filter(|c| c.partition == partition)
            .map(|c| (c.topic.as_str(), c.seq));
        let room = PageLimit {
            max_events: limit.max_events - rows.len(),
            max_bytes: limit.max_bytes - bytes,
        };
        let page = state.store.page(partition, position, room).await?;
        bytes += page.iter().map(StoredEvent::json_bytes).sum::<usize>();
        rows.extend(page.into_iter().map(|e| (partition, e)));
    }
    Ok(rows)
}

impl Cursor {
    fn encode(&self) -> String {
        let hex: String = self.topic.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}.{}.{hex}", self.partition, self.seq)
    }

    fn parse(raw: &str) -> Result<Self, ApiError> {
        let bad =
            || ApiError::BadRequest(format!("after is not a cursor from a Link header: {raw:?}"));
        let mut parts = raw.splitn(3, '.');
        let partition = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let seq = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let hex = parts.next().ok_or_else(bad)?;
        if hex.len() % 2 != 0 {
            return Err(bad());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let topic = String::from_utf8(bytes).map_err(|_| bad())?;
        Ok(Self {
            partition,
            topic,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_any_topic() {
        for topic in ["orders", "a.b.c", "", "ünï cødé / ?&="] {
            let cursor = Cursor {
                partition: 3,
                topic: topic.into(),
                seq: 42,
            };
            assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        }
        for bad in ["", "1", "1.2", "x.2.61", "1.2.6", "1.2.zz", "1.2.ff"] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn limit_must_be_1_to_max() {
        assert_eq!(parse_limit(None).unwrap(), MAX_PAGE);
        assert_eq!(parse_limit(Some("5")).unwrap(), 5);
        for bad in ["0", "10001", "-1", "ten"] {
            assert!(parse_limit(Some(bad)).is_err());
        }
    }
}
