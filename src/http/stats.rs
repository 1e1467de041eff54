//! `GET /stats`: lifetime totals, per-partition state and the first topics (at most
//! [`MAX_TOPICS_PAGE`]; `GET /topics` lists them all).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::AppState;
use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::topics::MAX_TOPICS_PAGE;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StatsBody {
    /// Events received in accepted publishes (lifetime).
    received: u64,
    /// Events stored for the first time (lifetime).
    unique_processed: u64,
    /// Events dropped as duplicates (lifetime).
    duplicate_dropped: u64,
    rejected: u64,
    /// The first topics in byte order, at most `MAX_TOPICS_PAGE`.
    topics: Vec<String>,
    /// True when there are more topics than `topics` lists.
    topics_truncated: bool,
    topic_count: u64,
    uptime_seconds: f64,
    partitions: Vec<PartitionBody>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PartitionBody {
    id: usize,
    queue_depth: usize,
    /// Memory of the events queued or committing.
    queue_bytes: usize,
    /// Events this partition has committed, duplicates included (its `received`).
    committed: u64,
    unique_processed: u64,
    duplicate_dropped: u64,
    worker_alive: bool,
    store_ok: bool,
}

/// Counters and state
///
/// Lifetime counters, per-partition state and the first 1000 topics.
#[utoipa::path(get, path = "/stats", tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Counters and state", body = StatsBody),
        (status = 401, description = "Missing or unknown token", body = super::error::ErrorBody),
        (status = 403, description = "The token lacks the read scope", body = super::error::ErrorBody),
        (status = 503, description = "The store could not be read (e.g. a partition database lost while running); see Retry-After", body = super::error::ErrorBody),
    ))]
pub(super) async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<StatsBody>, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Read)?;
    let topics = state.store.topics_page(None, MAX_TOPICS_PAGE).await?;
    let topic_count = state.store.topic_count().await?;
    let snapshot = state.snapshot_with_shared_totals().await;
    let partitions = snapshot
        .partitions
        .iter()
        .map(|p| PartitionBody {
            id: p.id,
            queue_depth: p.queue_depth,
            queue_bytes: p.queue_bytes,
            committed: p.totals.received,
            unique_processed: p.totals.unique_processed,
            duplicate_dropped: p.totals.duplicate_dropped,
            worker_alive: p.worker_alive,
            store_ok: p.store_ok,
        })
        .collect();
    Ok(Json(StatsBody {
        received: snapshot.totals.received,
        unique_processed: snapshot.totals.unique_processed,
        duplicate_dropped: snapshot.totals.duplicate_dropped,
        rejected: snapshot.rejected,
        topics_truncated: topic_count > topics.len() as u64,
        topic_count,
        topics: topics.into_iter().map(|t| t.topic).collect(),
        uptime_seconds: snapshot.uptime_seconds,
        partitions,
    }))
}
