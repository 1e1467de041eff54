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
use crate::event::{RequestError, parse_publish_body};
use crate::ingest::PublishOutcome;

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
    request_body(content = super::openapi::PublishBody, content_type = "application/json",
        description = "One event, or an array of 1 to max-events-per-request events"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Every event committed", body = PublishOutcome),
        (status = 400, description = "Not JSON, not UTF-8, or JSON of the wrong shape", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks the publish scope", body = ErrorBody),
        (status = 408, description = "The body arrived too slowly", body = ErrorBody),
        (status = 413, description = "Body over the byte limit, or too many events", body = ErrorBody),
        (status = 415, description = "Not application/json, or a Content-Encoding", body = ErrorBody),
        (status = 422, description = "Events that break the schema, by index and field; nothing stored", body = ErrorBody),
        (status = 503, description = "Overloaded, shutting down or storage unavailable; see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PublishOutcome>, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Publish)?;
    require_json(&headers)?;
    require_identity_encoding(&headers)?;
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let limit = state.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|d| d > limit) {
        return Err(too_large(limit));
    }
    let (bytes, mut charge) = read_body(&state, body).await?;
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
    let events = match parse_publish_body(&bytes, state.limits.max_events_per_request) {
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
        // The next byte must arrive before the average rate falls below the minimum.
        let rate_deadline = started
            + UPLOAD_GRACE
            + Duration::from_secs_f64(
                (bytes.len() + 1) as f64 / limits.min_upload_bytes_per_sec.max(1) as f64,
            );
        let deadline = whole_deadline.min(rate_deadline);
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

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes"))
}

/// `Content-Type: application/json`, with no `charset` or `charset=utf-8`.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mut parts = content_type.unwrap_or("").split(';').map(str::trim);
    let essence = parts.next().unwrap_or("");
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, got {}",
            content_type.unwrap_or("none")
        )));
    }
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the only accepted charset is utf-8, got {}",
                value.trim()
            )));
        }
    }
    Ok(())
}

/// Compressed bodies are not accepted yet: anything but `identity` is refused, never ignored.
fn require_identity_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value.to_str().unwrap_or("(not text)");
        if value
            .split(',')
            .map(str::trim)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {value} is not supported; accepted: identity"
            )));
        }
    }
    Ok(())
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
    fn json_with_utf8_or_no_charset_only() {
        for ok in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert!(
                require_json(&headers(&[(header::CONTENT_TYPE, ok)])).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
        ] {
            assert!(
                require_json(&headers(&[(header::CONTENT_TYPE, bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(require_json(&HeaderMap::new()).is_err());
    }

    #[test]
    fn only_identity_encoding_is_accepted() {
        assert!(require_identity_encoding(&HeaderMap::new()).is_ok());
        assert!(
            require_identity_encoding(&headers(&[(header::CONTENT_ENCODING, "identity")])).is_ok()
        );
        for bad in ["gzip", "br", "identity, gzip"] {
            let err = require_identity_encoding(&headers(&[(header::CONTENT_ENCODING, bad)]))
                .unwrap_err();
            assert!(err.to_string().contains("accepted: identity"), "{bad}");
        }
    }
}
