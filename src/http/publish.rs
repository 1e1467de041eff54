//! `POST /publish`: authorise, check the content type, read the body within its limit,
//! validate the whole request, then hand it to the ingest router and wait for the commit.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};

use super::AppState;
use super::auth::authorize;
use super::error::ApiError;
use crate::event::{RequestError, parse_publish_body};
use crate::ingest::PublishOutcome;

/// Memory a publish holds per body byte: the body, plus its parsed events (owned strings and
/// the raw payload), measured at about twice the body's size.
pub(crate) const MEMORY_PER_BODY_BYTE: usize = 3;

pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PublishOutcome>, ApiError> {
    authorize(&state.api_tokens, &headers)?;
    require_json(&headers)?;
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let limit = state.limits.max_body_bytes;
    // Reserve this request's share of the in-flight budget before reading the body (the
    // declared length when there is one, else the limit), times what the parsed events add;
    // held until the reply.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(limit);
    if declared > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body is larger than {limit} bytes"
        )));
    }
    let kib =
        u32::try_from((declared * MEMORY_PER_BODY_BYTE).div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let _budget = tokio::time::timeout(
        state.limits.enqueue_timeout,
        state.body_budget.clone().acquire_many_owned(kib),
    )
    .await
    .map_err(|_| ApiError::Overloaded {
        retry_after_secs: state.limits.retry_after_secs,
    })?
    .map_err(|_| ApiError::ShuttingDown)?;
    let read = tokio::time::timeout(state.limits.body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout)?;
    let bytes = read.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes"))
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })?;
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
    let outcome = state
        .ingest
        .submit(events)
        .await
        .map_err(|e| ApiError::from_ingest(e, state.limits.retry_after_secs))?;
    Ok(Json(outcome))
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = content_type
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(e) if e.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, got {}",
            content_type.unwrap_or("none")
        ))),
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
