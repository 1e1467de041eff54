//! `GET /stats`: lifetime totals, per-partition state and the topic list.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, blocking_read};
use crate::store::Totals;

#[derive(Serialize)]
pub(super) struct StatsBody {
    #[serde(flatten)]
    totals: Totals,
    rejected: u64,
    topics: Vec<String>,
    topic_count: usize,
    uptime_seconds: f64,
    partitions: Vec<PartitionBody>,
}

#[derive(Serialize)]
struct PartitionBody {
    id: usize,
    queue_depth: usize,
    /// Events this partition has committed, duplicates included (its `received`).
    committed: u64,
    unique_processed: u64,
    duplicate_dropped: u64,
    worker_alive: bool,
    store_ok: bool,
}

pub(super) async fn stats(State(state): State<Arc<AppState>>) -> Result<Json<StatsBody>, ApiError> {
    let reader_state = state.clone();
    let (topics, shared) = blocking_read(move || {
        let store = &reader_state.store;
        Ok((store.topics()?, store.shared_totals()?))
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
        topic_count: topics.len(),
        topics,
        uptime_seconds: state.service_stats.uptime_seconds(),
        partitions,
    }))
}
