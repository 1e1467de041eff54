//! `GET /topics`: every topic, in pages sorted by the topics' UTF-8 bytes, with how many of
//! its events are stored and the highest `seq` it has given. The counts are kept with the
//! events in the same transactions, so a page costs one indexed range read per partition.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::{AppState, query};

/// Default and maximum topics per page.
pub(super) const MAX_TOPICS_PAGE: usize = 1000;

/// List topics
///
/// Every topic, in pages sorted by its UTF-8 bytes, with its stored event count and last seq.
#[utoipa::path(get, path = "/topics", tag = "events", operation_id = "list_topics",
    params(super::params::TopicsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of topics", body = Vec<super::schemas::TopicInfoSchema>,
            headers(("Link" = String, description = "`</topics?...>; rel=\"next\"` while more topics follow"))),
        (status = 400, description = "An unknown or malformed query parameter", body = super::error::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = super::error::ErrorBody),
        (status = 403, description = "The token lacks the read scope", body = super::error::ErrorBody),
        (status = 503, description = "The store could not be read; see Retry-After", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Read)?;
    let params = query::parse(raw.as_deref(), &["after", "limit"])?;
    let limit = query::limit(params.get("limit").map(String::as_str), MAX_TOPICS_PAGE)?;
    let mut topics = state
        .store
        .topics_page(params.get("after").map(String::as_str), limit + 1)
        .await?;
    let more = topics.len() > limit;
    topics.truncate(limit);
    let next = match (more, topics.last()) {
        (true, Some(last)) => Some(
            serde_urlencoded::to_string([
                ("after", last.topic.as_str()),
                ("limit", &limit.to_string()),
            ])
            .map_err(|_| ApiError::Internal)?,
        ),
        _ => None,
    };
    let mut response = Json(topics).into_response();
    if let Some(query) = next {
        let link = format!("</topics?{query}>; rel=\"next\"");
        let value = HeaderValue::from_str(&link).map_err(|_| ApiError::Internal)?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}
