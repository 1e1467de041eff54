//! `POST /publish`: authorise, check the content type and encoding, read the body within its
//! limits, validate the whole request, then hand it to the ingest router and wait for the
//! commit.
//!
//! Memory: the body is charged on the in-flight budget as its bytes arrive (a slow upload
//! holds only what it has sent), then the parsed events are; their charge goes into the
//! queue with them and comes back after the commit (see [`crate::budget`]). A body must also
//! keep up a minimum average rate after a short grace, so a trickling upload is cut off.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::AppState;
use super::auth::{Scope, authorize};
use super::error::{ApiError, ErrorBody};
use crate::budget::{BudgetError, Charge};
use crate::event::{RequestError, parse_ndjson_body, parse_publish_body};
use crate::ingest::PublishOutcome;
use content::{Encoding, Format, body_encoding, body_format, check_transfer_encoding, decompress};

mod content;

/// Extra budget taken before parsing, per body byte: parsed events hold about as much as the
/// body again (owned strings, the raw payload) plus per-event overhead. Shrunk to the events'
/// real size right after parsing.
pub(crate) const PARSE_BYTES_PER_BODY_BYTE: usize = 2;

/// Time an upload may take before the minimum rate applies.
const UPLOAD_GRACE: Duration = Duration::from_secs(5);

/// Publish events
///
/// One event or an array of events. The reply comes after every event of the request is
/// committed; a duplicate (`topic`, `event_id`) is counted, not stored again.
#[utoipa::path(post, path = "/publish", tag = "events",
    request_body(
        description = "One event, or an array of 1 to max-events-per-request events; or \
                       NDJSON / JSON Lines, one event object per line. Optionally compressed: \
                       `Content-Encoding: gzip` or `zstd` (the decompressed size is held to \
                       the body limit).",
        content(
            (super::params::PublishBody = "application/json"),
            (String = "application/x-ndjson"),
            (String = "application/jsonl"),
        ),
    ),
    params(("Content-Encoding" = Option<String>, Header,
        description = "`identity` (default), `gzip` or `zstd`; others get 415")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Every event committed", body = super::schemas::PublishOutcomeSchema),
        (status = 400, description = "Not JSON, not UTF-8, JSON of the wrong shape, or a corrupt compressed body", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks the publish scope", body = ErrorBody),
        (status = 408, description = "The body arrived too slowly", body = ErrorBody),
        (status = 413, description = "Body over the byte limit (also once decompressed), or too many events", body = ErrorBody),
        (status = 415, description = "Another content type, charset or Content-Encoding", body = ErrorBody),
        (status = 422, description = "Events that break the schema, by index and field; nothing stored", body = ErrorBody),
        (status = 501, description = "A Transfer-Encoding other than chunked", body = ErrorBody),
        (status = 503, description = "Overloaded, shutting down or storage unavailable; see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PublishOutcome>, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Publish)?;
    let format = body_format(&headers)?;
    check_transfer_encoding(&headers)?;
    let encoding = body_encoding(&headers)?;
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    if let Some(reason) = state.disk.as_ref().and_then(|disk| disk.refusal()) {
        return Err(ApiError::LowDisk(reason));
    }
    let limit = state.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|d| d > limit) {
        return Err(too_large(limit));
    }
    let (bytes, mut charge) = read_body(&state, body).await?;
    let bytes = match encoding {
        Encoding::Identity => bytes,
        compressed => {
            let plain = decompress(&state, compressed, &bytes, &mut charge).await?;
            drop(bytes);
            plain
        }
    };
    let overloaded = |_: BudgetError| ApiError::Overloaded {
        retry_after_secs: state.limits.retry_after_secs,
    };
    charge
        .grow_to(
            bytes.len() * (1 + PARSE_BYTES_PER_BODY_BYTE),
            state.limits.enqueue_timeout,
        )
        .await
        .map_err(overloaded)?;
    let parsed = match format {
        Format::Json => parse_publish_body(&bytes, state.limits.max_events_per_request),
        Format::Ndjson => parse_ndjson_body(&bytes, state.limits.max_events_per_request),
    };
    let events = match parsed {
        Ok(events) => events,
        Err(e) => {
            if let RequestError::Invalid(details) = &e {
                let mut bad: Vec<usize> = details.iter().map(|d| d.index).collect();
                bad.dedup();
                state.service_stats.add_rejected(bad.len() as u64);
            }
            return Err(e.into());
        }
    };
    if let Some(disk) = &state.disk {
        disk.note_accepted(bytes.len());
    }
    drop(bytes);
    charge.shrink_to(events.iter().map(crate::event::Event::memory_bytes).sum());
    let outcome = state
        .ingest
        .submit(events, charge)
        .await
        .map_err(|e| ApiError::from_ingest(e, state.limits.retry_after_secs))?;
    Ok(Json(outcome))
}

/// Reads the body chunk by chunk, charging each chunk on the in-flight budget before taking
/// the next, within the size limit, the body timeout and the minimum upload rate.
async fn read_body(state: &AppState, body: Body) -> Result<(Vec<u8>, Charge), ApiError> {
    let limits = &state.limits;
    let started = Instant::now();
    let whole_deadline = started + limits.body_timeout;
    let mut charge = state.body_budget.empty();
    let mut bytes = Vec::new();
    let mut body = body;
    loop {
        let deadline = whole_deadline.min(next_byte_due(
            started,
            bytes.len(),
            limits.min_upload_bytes_per_sec,
        ));
        // A frame already there (a small body arrives with its headers) needs no timer.
        let next = match body.frame().now_or_never() {
            Some(frame) => Ok(frame),
            None => tokio::time::timeout_at(deadline, body.frame()).await,
        };
        let frame = match next {
            Err(_) if deadline == whole_deadline => return Err(ApiError::RequestTimeout),
            Err(_) => {
                return Err(ApiError::UploadTooSlow {
                    min_bytes_per_sec: limits.min_upload_bytes_per_sec,
                });
            }
            Ok(None) => return Ok((bytes, charge)),
            Ok(Some(Err(e))) => {
                return Err(ApiError::BadRequest(format!(
                    "could not read the request body: {e}"
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limits.max_body_bytes {
            return Err(too_large(limits.max_body_bytes));
        }
        charge
            .grow_to(bytes.len() + data.len(), limits.enqueue_timeout)
            .await
            .map_err(|_| ApiError::Overloaded {
                retry_after_secs: limits.retry_after_secs,
            })?;
        bytes.extend_from_slice(&data);
    }
}

/// When the next byte of a body must have arrived, `received` bytes in: after the grace, the
/// average rate since `started` may not fall below `min_bytes_per_sec`.
fn next_byte_due(started: Instant, received: usize, min_bytes_per_sec: u64) -> Instant {
    started
        + UPLOAD_GRACE
        + Duration::from_secs_f64((received + 1) as f64 / min_bytes_per_sec.max(1) as f64)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn json_ndjson_and_jsonl_with_utf8_or_no_charset_only() {
        for (ok, format) in [
            ("application/json", Format::Json),
            ("Application/JSON; charset=UTF-8", Format::Json),
            ("application/json;charset=\"utf-8\"", Format::Json),
            ("application/x-ndjson", Format::Ndjson),
            ("application/jsonl; charset=utf-8", Format::Ndjson),
        ] {
            assert_eq!(
                body_format(&headers(&[(header::CONTENT_TYPE, ok)])).unwrap(),
                format,
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
        ] {
            let err = body_format(&headers(&[(header::CONTENT_TYPE, bad)])).unwrap_err();
            assert!(
                err.to_string().contains("application/x-ndjson")
                    || err.to_string().contains("charset"),
                "{bad}"
            );
        }
        assert!(body_format(&HeaderMap::new()).is_err());
    }

    #[test]
    fn identity_gzip_and_zstd_are_accepted_and_others_named() {
        let encoding = |value: &str| body_encoding(&headers(&[(header::CONTENT_ENCODING, value)]));
        assert_eq!(
            body_encoding(&HeaderMap::new()).unwrap(),
            Encoding::Identity
        );
        assert_eq!(encoding("identity").unwrap(), Encoding::Identity);
        assert_eq!(encoding("GZIP").unwrap(), Encoding::Gzip);
        assert_eq!(encoding("zstd").unwrap(), Encoding::Zstd);
        for bad in ["br", "deflate", "gzip, zstd"] {
            let err = encoding(bad).unwrap_err();
            assert!(
                err.to_string().contains("accepted: identity, gzip, zstd"),
                "{bad}: {err}"
            );
        }
    }
}
