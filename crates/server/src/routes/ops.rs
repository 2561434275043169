//! Health, readiness, metrics and the OpenAPI document.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and the server is not draining.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let db = state.store.identity().await;
    let ready = state.is_ready() && db.is_ok();
    let body = json!({
        "ready": ready,
        "server": state.config.server_name,
        "pool": state.config.pool,
        "data_center": state.config.data_center,
        "database": db.as_ref().ok(),
        "pool": state.pool(),
        "error": db.as_ref().err().map(|e| e.to_string()),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /api/v1/pool`: whether this server serves and where the active
/// servers are (answered by inactive servers too: it is how clients find
/// an active one).
pub async fn pool(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(state.pool())
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = state.metrics.render(&state.store.metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub const OPENAPI: &str = include_str!("../openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
