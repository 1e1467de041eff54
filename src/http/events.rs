//! `GET /events`: pages of stored events with a `Link: <...>; rel="next"` header, and the long
//! poll (`wait=`). The handler parses and authorises; pages and waits are `read::page` and
//! `read::long_poll`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::{AppState, query};
use crate::budget::Charge;
use crate::ingest::partition_of;
use crate::read::long_poll::wait_for_event;
use crate::read::page::{self, PageCursor};
use crate::store::{PageLimit, StoredEvent};

/// Default and maximum page size.
pub const MAX_PAGE: usize = 10_000;
/// Longest long poll (`wait=`), in seconds.
const MAX_WAIT_SECS: u64 = 30;

/// Read stored events
///
/// Pages of events. With `topic`: that topic's events in `seq` order, `after` a seq. Without:
/// every event, partition by partition, `after` an opaque cursor from the previous page's
/// `Link: <...>; rel="next"` header (absent on the last page).
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "list_events",
    params(super::params::EventsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = Vec<super::schemas::StoredEventSchema>,
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
    let params = query::parse(raw.as_deref(), &["topic", "after", "limit", "wait"])?;
    let max_events = query::limit(params.get("limit").map(String::as_str), MAX_PAGE)?;
    let topic = match params.get("topic") {
        Some(topic) if topic.is_empty() => {
            return Err(ApiError::BadRequest("topic must not be empty".into()));
        }
        topic => topic,
    };
    let seq_after = || {
        params
            .get("after")
            .map_or(Ok(0), |raw| query::seq(raw, "after"))
    };
    if let Some(raw) = params.get("wait") {
        let wait = raw
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "wait must be whole seconds from 0 to {MAX_WAIT_SECS}, got {}",
                    query::shown(raw)
                ))
            })?;
        let topic = topic.ok_or_else(|| {
            ApiError::BadRequest("wait needs a topic (a long poll follows one topic)".into())
        })?;
        let after = seq_after()?;
        // A reader slot for the wait (Guarantee 7): past --max-readers, 503 at once.
        let _reader = state.readers.enter()?;
        let partition = partition_of(topic, state.store.partitions());
        // Waits before taking any read budget, so idle long polls hold no page memory.
        let found = wait_for_event(
            state.store.as_ref(),
            &state.ingest.partitions()[partition],
            partition,
            topic,
            after,
            Duration::from_secs(wait),
            state.shutdown_signal(),
        )
        .await?;
        if !found {
            return Ok(charged_json(b"[]".to_vec(), state.read_budget.empty()));
        }
    }
    let bounds = PageLimit {
        max_events,
        max_bytes: state.limits.max_page_bytes,
    };
    // Held until the response is written: bounds the memory of all pages in flight.
    let reservation = page::reservation(state.limits.max_page_bytes, state.limits.max_body_bytes);
    let mut charge = state
        .read_budget
        .charge(reservation, state.limits.enqueue_timeout)
        .await
        .map_err(|_| ApiError::ReadsBusy)?;
    let (events, next): (Vec<StoredEvent>, _) = match topic {
        Some(topic) => {
            let after = seq_after()?;
            let partition = partition_of(topic, state.store.partitions());
            let (events, next) =
                page::topic_page(state.store.as_ref(), partition, topic, after, bounds).await?;
            let next = next.map(|last| {
                vec![
                    ("topic", topic.clone()),
                    ("after", last.to_string()),
                    ("limit", max_events.to_string()),
                ]
            });
            (events, next)
        }
        None => {
            let after = params
                .get("after")
                .map(|raw| {
                    PageCursor::parse(raw).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "after is not a cursor from a Link header: {}",
                            query::shown(raw)
                        ))
                    })
                })
                .transpose()?;
            if after
                .as_ref()
                .is_some_and(|c| c.partition >= state.store.partitions())
            {
                return Err(ApiError::BadRequest(
                    "after names a partition that does not exist".into(),
                ));
            }
            let (events, next) =
                page::all_topics_page(state.store.as_ref(), after.as_ref(), bounds).await?;
            let next = next.map(|cursor| {
                vec![
                    ("after", cursor.encode()),
                    ("limit", max_events.to_string()),
                ]
            });
            (events, next)
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
