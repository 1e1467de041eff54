//! `GET /stats`: lifetime totals, per-partition state and the first topics (at most
//! [`MAX_TOPICS_PAGE`]; `GET /topics` lists them all).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::auth::{Scope, authorize};
use super::error::ApiError;
use super::topics::MAX_TOPICS_PAGE;
use super::{AppState, blocking_read};
use crate::store::Totals;

#[derive(Serialize)]
pub(super) struct StatsBody {
    #[serde(flatten)]
    totals: Totals,
    rejected: u64,
    /// The first topics in byte order, at most `MAX_TOPICS_PAGE`.
    topics: Vec<String>,
    /// True when there are more topics than `topics` lists.
    topics_truncated: bool,
    topic_count: u64,
    uptime_seconds: f64,
    partitions: Vec<PartitionBody>,
}

#[derive(Serialize)]
struct PartitionBody {
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

pub(super) async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<StatsBody>, ApiError> {
    authorize(&state.api_tokens, &headers, Scope::Read)?;
    let reader_state = state.clone();
    let (topics, topic_count, shared) = blocking_read(move || {
        let store = &reader_state.store;
        Ok((
            store.topics_page(None, MAX_TOPICS_PAGE)?,
            store.topic_count()?,
            store.shared_totals()?,
        ))
    })
    .await?;
    state.publish_shared_totals(shared);

    let mut totals = Totals::default();
    let partitions = state
        .ingest
        .partitions()
        .iter()
        .enumerate()
        .map(|(id, p)| {
            let t = p.stats.totals();
            totals += t;
            PartitionBody {
                id,
                queue_depth: p.queue_depth(),
                queue_bytes: p.queued_bytes(),
                committed: t.received,
                unique_processed: t.unique_processed,
                duplicate_dropped: t.duplicate_dropped,
                worker_alive: p.stats.worker_alive(),
                store_ok: p.stats.store_ok(),
            }
        })
        .collect();
    Ok(Json(StatsBody {
        totals,
        rejected: state.service_stats.rejected(),
        topics_truncated: topic_count > topics.len() as u64,
        topic_count,
        topics: topics.into_iter().map(|t| t.topic).collect(),
        uptime_seconds: state.service_stats.uptime_seconds(),
        partitions,
    }))
}
