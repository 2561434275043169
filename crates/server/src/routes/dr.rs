//! `/api/v1/admin/...`: the DR dashboard's data and its runbooks
//! (administrators only). Answered by inactive servers too: a pool in
//! trouble is when an administrator needs to look at it.

use crate::auth::PoolAdmin;
use crate::console::{Console, Runbook};
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pchat_api::ErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn console(state: &AppState) -> Result<Arc<dyn Console>, ApiError> {
    state.console.get().cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoTopology,
            "this chat server runs outside a pool topology (start it with --topology)",
        )
    })
}

fn runbook(name: &str) -> Result<Runbook, ApiError> {
    Runbook::parse(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no runbook {name:?}: failover, failback or switchover"),
        )
    })
}

#[derive(Deserialize)]
pub struct TopologyQuery {
    /// Only the samples taken after this time (ms): a dashboard that has the
    /// older ones asks for what is new.
    #[serde(default)]
    since: i64,
}

pub async fn topology(
    State(state): State<Arc<AppState>>,
    _admin: PoolAdmin,
    axum::extract::Query(q): axum::extract::Query<TopologyQuery>,
) -> ApiResult<axum::Json<Value>> {
    let c = console(&state)?;
    let mut snapshot = c.snapshot().await;
    snapshot["samples"] = c.samples(q.since);
    snapshot["run"] = c.run();
    Ok(axum::Json(snapshot))
}

pub async fn plan(
    State(state): State<Arc<AppState>>,
    _admin: PoolAdmin,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let c = console(&state)?;
    Ok(axum::Json(c.plan(runbook(&name)?).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The runbook's name again: a run is never started by accident.
    confirm: String,
}

pub async fn start(
    State(state): State<Arc<AppState>>,
    admin: PoolAdmin,
    Path(name): Path<String>,
    Json(req): Json<StartRequest>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let c = console(&state)?;
    let r = runbook(&name)?;
    if req.confirm != r.as_str() {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            format!("confirm must be {:?} to run it", r.as_str()),
        ));
    }
    c.start(r)
        .map_err(|why| ApiError::new(ErrorCode::RunbookRunning, why))?;
    tracing::info!(runbook = r.as_str(), by = %admin.0.name, "runbook started from the dashboard");
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "run": c.run() }))))
}

pub async fn run(
    State(state): State<Arc<AppState>>,
    _admin: PoolAdmin,
) -> ApiResult<axum::Json<Value>> {
    let c = console(&state)?;
    Ok(axum::Json(json!({ "run": c.run() })))
}
