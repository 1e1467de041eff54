//! The HTTP API of `../API.md`: one file per endpoint group, errors in [`error`].

mod auth;
pub use auth::{ApiToken, Scope, Secret};
pub mod error;
mod events;
mod health;
pub mod low_priority;
mod openapi;
mod params;
mod publish;
mod query;
mod readers;
#[cfg(test)]
mod router_tests;
mod schemas;
pub mod serve;
mod stats;
mod stream;
mod topics;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::budget::MemoryBudget;
use crate::disk::DiskGuard;
use crate::ingest::Ingest;
use crate::stats::{ServiceStats, Snapshot};
use crate::store::Store;
use crate::telemetry::Metrics;
use error::ApiError;
use low_priority::LowPriority;
use readers::ReaderSlots;
use tokio_util::sync::CancellationToken;

pub use events::MAX_PAGE;
pub(crate) use publish::PARSE_BYTES_PER_BODY_BYTE;

/// Request limits enforced before anything is enqueued.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
    /// `Retry-After` sent with an overload 503.
    pub retry_after_secs: u64,
    /// Time allowed to receive a whole request body (slow senders get 408).
    pub body_timeout: std::time::Duration,
    /// How long a publish waits for body budget or queue space before 503.
    pub enqueue_timeout: std::time::Duration,
    /// After a short grace, the least average rate a request body must arrive at (else 408).
    pub min_upload_bytes_per_sec: u64,
    /// Byte bound of one `/events` page (JSON), beside its event count.
    pub max_page_bytes: usize,
    /// One `info` line per request (method, route, status, latency, request id).
    pub access_log: bool,
    /// A stream subscriber that takes no frame for this long is disconnected.
    pub stream_write_timeout: std::time::Duration,
    /// A quiet stream gets a `: keep-alive` comment this often.
    pub stream_keep_alive: std::time::Duration,
    /// Streams and long polls held at once (`--max-readers`).
    pub max_readers: usize,
}

/// Memory budgets of the HTTP layer, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub inflight_body_bytes: usize,
    pub inflight_read_bytes: usize,
    /// Every stream subscriber's frames (`--max-stream-mib`).
    pub stream_bytes: usize,
}

/// Everything a handler needs; shared by all handlers for the life of the server.
#[derive(Debug)]
pub struct AppState {
    pub ingest: Ingest,
    /// Reads: `/events`, topics, shared totals.
    pub store: Arc<dyn Store>,
    pub service_stats: ServiceStats,
    pub limits: HttpLimits,
    /// Accepted bearer tokens with their scopes; empty = no auth.
    pub api_tokens: Vec<ApiToken>,
    pub metrics: Metrics,
    /// Publish bodies being read and their events until committed (`--max-inflight-body-mib`):
    /// bounds the memory of publishes whatever the number of connections or disconnects.
    pub body_budget: MemoryBudget,
    /// `/events` pages until written (`--max-inflight-read-mib`).
    pub read_budget: MemoryBudget,
    /// Streams and long polls (`--max-readers`).
    pub readers: ReaderSlots,
    /// Memory of all stream frames being read, built, queued or written (`--max-stream-mib`).
    pub stream_budget: MemoryBudget,
    /// Cancelled once when shutdown begins: publishes then get 503, `/readyz` goes red, and
    /// long-lived responses (streams, long polls) end.
    shutting_down: CancellationToken,
    /// The runtime stream subscribers run on, below publishing's priority; shut down with
    /// this state.
    low_priority: LowPriority,
    /// The SQLite data dir's disk and its low-space guard (`None` on PostgreSQL).
    pub disk: Option<Arc<DiskGuard>>,
}

impl AppState {
    pub fn new(
        ingest: Ingest,
        store: Arc<dyn Store>,
        limits: HttpLimits,
        api_tokens: Vec<ApiToken>,
        metrics: Metrics,
        budgets: Budgets,
        disk: Option<Arc<DiskGuard>>,
    ) -> Self {
        Self {
            body_budget: MemoryBudget::new(budgets.inflight_body_bytes),
            read_budget: MemoryBudget::new(budgets.inflight_read_bytes),
            readers: ReaderSlots::new(limits.max_readers),
            stream_budget: MemoryBudget::new(budgets.stream_bytes),
            ingest,
            store,
            service_stats: ServiceStats::new(),
            limits,
            api_tokens,
            metrics,
            shutting_down: CancellationToken::new(),
            low_priority: LowPriority::default(),
            disk,
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.cancel();
        self.ingest.close();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.is_cancelled()
    }

    /// Cancelled once shutdown begins: what streams and long polls watch.
    pub(crate) fn shutdown_signal(&self) -> CancellationToken {
        self.shutting_down.clone()
    }

    /// The service's numbers now, as `/readyz` needs them (no store read).
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = self
            .ingest
            .snapshot(&self.service_stats, self.is_shutting_down());
        if let Some(disk) = &self.disk {
            snapshot.disk = disk.numbers();
            snapshot.low_disk = disk.refusal();
        }
        snapshot.readers = self.readers.in_use();
        snapshot
    }

    /// The numbers for `/stats` and `/metrics`: first takes in the store's shared totals, if
    /// it has any (PostgreSQL: other replicas commit too), so they show every replica's
    /// lifetime totals (see `read::totals`).
    async fn snapshot_with_shared_totals(self: &Arc<Self>) -> Snapshot {
        crate::read::totals::refresh_shared_totals(self.store.as_ref(), &self.ingest).await;
        self.snapshot()
    }

    /// The numbers for `/metrics`: those of `/stats`, plus what retention leaves stored (a
    /// store read only the metrics show).
    async fn snapshot_for_metrics(self: &Arc<Self>) -> Snapshot {
        let mut snapshot = self.snapshot_with_shared_totals().await;
        match self.store.stored().await {
            Ok(stored) => snapshot.stored = stored,
            Err(e) => tracing::warn!(error = %e, "stored events not read from the store"),
        }
        snapshot
    }
}

/// The whole API, without a socket: tests drive it over a real socket.
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Innermost first: a panic becomes a 500 that track_requests counts and logs, and
        // the request id is set before either sees the request.
        .layer(CatchPanicLayer::custom(
            move |panic: Box<dyn std::any::Any + Send>| answer_panic(&metrics, panic.as_ref()),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost: the head as the client sent it, before the request id is added.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_large_heads,
        ))
        .with_state(state)
}

/// Every route's path, as [`routes`] lists them: the request metrics' route labels (a
/// `&'static str` each, so no label is ever allocated per request).
pub const ROUTE_PATHS: [&str; 12] = [
    "/publish",
    "/events",
    "/events/stream",
    "/topics",
    "/stats",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/",
    openapi::REDOC_PATH,
];

/// Every route, by path: the router is built from this table; tests check that its paths are
/// [`ROUTE_PATHS`] and exactly those the OpenAPI document names.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/publish", post(publish::publish)),
        ("/events", get(events::list)),
        ("/events/stream", get(stream::stream)),
        ("/topics", get(topics::list)),
        ("/stats", get(stats::stats)),
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
        ("/metrics", get(metrics_text)),
        ("/openapi.json", get(openapi::document)),
        ("/docs", get(openapi::docs_page)),
        ("/", get(openapi::live_page)),
        (openapi::REDOC_PATH, get(openapi::docs_script)),
    ]
}

/// Prometheus metrics
///
/// Text exposition format 0.0.4. Open like `/healthz`: it carries counts, not events.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
))]
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(&state.snapshot_for_metrics().await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A request's route: the index in [`ROUTE_PATHS`] of the route it matched (axum's
/// `MatchedPath`), or `ROUTE_PATHS.len()` for `other` (a scanner probing random paths cannot
/// create new series). The metrics count by this index.
fn route_of(request: &Request) -> usize {
    request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| ROUTE_PATHS.iter().position(|p| *p == matched.as_str()))
        .unwrap_or(ROUTE_PATHS.len())
}

/// Counts every request by route and status, and times publishes.
async fn track_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_of(&request);
    let label = ROUTE_PATHS.get(route).copied().unwrap_or("other");
    let method = request.method().clone();
    let request_id = request.headers().get(REQUEST_ID).cloned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    if label == "/publish" {
        state.metrics.record_publish(elapsed);
    }
    let status = response.status().as_u16();
    state.metrics.record_request(route, status);
    if state.limits.access_log {
        let request_id = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: "access",
            %method,
            route = label,
            status,
            // Microsecond precision: 1.539, not 1.5389519999999999.
            latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            request_id,
            "request"
        );
    }
    response
}

/// 431 for a head over [`error::MAX_HEAD_BYTES`], counted under the route `other`.
async fn refuse_large_heads(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if head_bytes(&request) <= error::MAX_HEAD_BYTES {
        return next.run(request).await;
    }
    let response = ApiError::HeadersTooLarge.into_response();
    state
        .metrics
        .record_request(ROUTE_PATHS.len(), response.status().as_u16());
    response
}

/// The size of a request's head as it came on the wire (HTTP/1.1): request line, each header
/// as `name: value\r\n`, the blank line. hyper's read buffer lets heads somewhat past
/// 64 KiB through (its bound is on the buffer, not the head); this is the exact bound.
fn head_bytes(request: &Request) -> usize {
    // The request target as sent, measured without building it (this runs on every request).
    let uri = request.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + 11;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

/// The request id header: set (a UUID) when the client sent none, echoed in the reply.
const REQUEST_ID: &str = "x-request-id";

/// A panicking handler: logged, counted, answered with the generic JSON 500 (hyper would
/// otherwise drop the connection without a reply).
fn answer_panic(metrics: &Metrics, panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a request handler panicked");
    metrics.record_handler_panic();
    ApiError::Internal.into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_router_and_the_openapi_document_name_the_same_paths() {
        let mut routed: Vec<String> = super::routes()
            .into_iter()
            .map(|(path, _)| path.to_string())
            .collect();
        assert_eq!(
            routed,
            super::ROUTE_PATHS,
            "the route labels follow the route table"
        );
        let mut documented = super::openapi::tests::documented_paths();
        routed.sort();
        documented.sort();
        assert_eq!(routed, documented);
    }
}
