//! The HTTP API of `../API.md`: one file per endpoint group, errors in [`error`].

mod auth;
pub mod error;
mod events;
mod health;
mod publish;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::{get, post};

use crate::ingest::Ingest;
use crate::stats::ServiceStats;
use crate::store::PartitionReader;

pub use events::MAX_PAGE;

/// Request limits enforced before anything is enqueued.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
    /// `Retry-After` sent with an overload 503.
    pub retry_after_secs: u64,
}

/// Everything a handler needs; shared by all handlers for the life of the server.
#[derive(Debug)]
pub struct AppState {
    pub ingest: Ingest,
    /// One per partition, index = partition id.
    pub readers: Vec<PartitionReader>,
    pub service_stats: ServiceStats,
    pub limits: HttpLimits,
    pub api_token: Option<String>,
    /// Set once when shutdown begins; publishes then get 503 and `/readyz` goes red.
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(
        ingest: Ingest,
        readers: Vec<PartitionReader>,
        limits: HttpLimits,
        api_token: Option<String>,
    ) -> Self {
        Self {
            ingest,
            readers,
            service_stats: ServiceStats::new(),
            limits,
            api_token,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.ingest.close();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// The whole API, without a socket: tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/publish", post(publish::publish))
        .route("/events", get(events::list))
        .route("/stats", get(stats::stats))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
