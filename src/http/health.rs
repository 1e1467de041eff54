//! `GET /healthz` (the process answers) and `GET /readyz` (it can take publishes: not
//! shutting down, every partition worker alive, every store's last commit or check
//! succeeded, every partition database still present).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let reasons = state.snapshot().not_ready_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "not ready", "reasons": reasons})),
        )
    }
}
