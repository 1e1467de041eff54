//! `GET /healthz` (the process answers) and `GET /readyz` (it can take publishes: not
//! shutting down, every partition worker alive, every store's last commit or check
//! succeeded, every partition database still present).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Status {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Why the service is not ready.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NotReady {
    #[schema(example = "not ready")]
    error: &'static str,
    /// One line per failing check, naming the partition.
    reasons: Vec<String>,
}

/// Liveness
///
/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Status)))]
pub(super) async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness
///
/// Not shutting down, every partition worker alive, every store's last commit or check
/// succeeded, every partition database present.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready for publishes", body = Status),
    (status = 503, description = "Not ready, with the reasons", body = NotReady),
))]
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let reasons = state.snapshot().not_ready_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, Json(Status { status: "ready" })).into_response()
    } else {
        let body = NotReady {
            error: "not ready",
            reasons,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
