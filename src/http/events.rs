//! `GET /events`: pages of stored events with a `Link: <...>; rel="next"` header.
//!
//! With `topic`, events come in ascending `seq` and `after` is a seq. Without it, events come
//! partition by partition, each ordered by (`topic`, `seq`), and `after` is an opaque cursor
//! `<partition>.<seq>.<hex of topic>` taken from the previous page's `Link`. Either way,
//! walking the pages returns every stored event exactly once.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::authorize;
use super::error::ApiError;
use super::{AppState, blocking_read};
use crate::ingest::partition_of;
use crate::store::StoredEvent;

/// Default and maximum page size.
pub const MAX_PAGE: usize = 10_000;

#[derive(Deserialize)]
struct EventsQuery {
    topic: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// Position after the last event of a page, across all topics.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    partition: usize,
    topic: String,
    seq: i64,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state.api_tokens, &headers)?;
    let query: EventsQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let limit = parse_limit(query.limit.as_deref())?;
    let (events, next) = match query.topic {
        Some(topic) => {
            if topic.is_empty() {
                return Err(ApiError::BadRequest("topic must not be empty".into()));
            }
            let after = match query.after.as_deref() {
                None => 0,
                Some(raw) => raw.parse::<i64>().ok().filter(|&s| s >= 0).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "after must be a seq (a number >= 0), got {raw:?}"
                    ))
                })?,
            };
            let partition = partition_of(&topic, state.store.partitions());
            let reader_state = state.clone();
            let topic_for_read = topic.clone();
            let mut events = blocking_read(move || {
                reader_state
                    .store
                    .topic_page(partition, &topic_for_read, after, limit + 1)
            })
            .await?;
            let next = (events.len() > limit).then(|| {
                events.truncate(limit);
                let last = events.last().map_or(after, |e| e.seq);
                vec![
                    ("topic", topic),
                    ("after", last.to_string()),
                    ("limit", limit.to_string()),
                ]
            });
            (events, next)
        }
        None => {
            let after = query.after.as_deref().map(Cursor::parse).transpose()?;
            if after
                .as_ref()
                .is_some_and(|c| c.partition >= state.store.partitions())
            {
                return Err(ApiError::BadRequest(
                    "after names a partition that does not exist".into(),
                ));
            }
            let reader_state = state.clone();
            let mut rows =
                blocking_read(move || all_topics_page(&reader_state, after, limit + 1)).await?;
            let next = (rows.len() > limit).then(|| {
                rows.truncate(limit);
                let (partition, last) = rows.last().expect("limit >= 1 rows remain");
                let cursor = Cursor {
                    partition: *partition,
                    topic: last.topic.clone(),
                    seq: last.seq,
                };
                vec![("after", cursor.encode()), ("limit", limit.to_string())]
            });
            (rows.into_iter().map(|(_, e)| e).collect(), next)
        }
    };

    let mut response = Json(events).into_response();
    if let Some(params) = next {
        let query = serde_urlencoded::to_string(params).map_err(|_| ApiError::Internal)?;
        let link = format!("</events?{query}>; rel=\"next\"");
        let value = HeaderValue::from_str(&link).map_err(|_| ApiError::Internal)?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
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

/// Up to `limit` events across partitions, starting after `after`, tagged with their partition.
fn all_topics_page(
    state: &AppState,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<(usize, StoredEvent)>, crate::store::StoreError> {
    let start = after.as_ref().map_or(0, |c| c.partition);
    let mut rows = Vec::new();
    for partition in start..state.store.partitions() {
        let position = after
            .as_ref()
            .filter(|c| c.partition == partition)
            .map(|c| (c.topic.as_str(), c.seq));
        let page = state.store.page(partition, position, limit - rows.len())?;
        rows.extend(page.into_iter().map(|e| (partition, e)));
        if rows.len() == limit {
            break;
        }
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
