//! `/api/v1/compliance`: the records of `mgccomp` and the marks of export
//! jobs (administrators only), so an exporter anywhere pages through the
//! records and claims what it exported exactly once.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{Json, Query};
use crate::AppState;
use axum::extract::{Path, State};
use pchat_api::{
    ComplianceRecordView, ComplianceRecordsResponse, ErrorCode, MarkResponse, MoveMarkRequest,
};
use pchat_store::{ComplianceStore, RecordQuery};
use serde::Deserialize;
use std::sync::Arc;

/// Largest page of records.
const MAX_RECORDS: u32 = 10_000;

fn store(state: &AppState, caller: &Caller) -> ApiResult<Arc<dyn ComplianceStore>> {
    caller.require_admin()?;
    state.compliance.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::ComplianceUnavailable,
            "this server has no compliance database",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordParams {
    after: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<u32>,
}

pub async fn records(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(p): Query<RecordParams>,
) -> ApiResult<axum::Json<ComplianceRecordsResponse>> {
    let comp = store(&state, &caller)?;
    let limit = p.limit.unwrap_or(1000);
    if !(1..=MAX_RECORDS).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_RECORDS}"),
        ));
    }
    let records: Vec<ComplianceRecordView> = comp
        .records(RecordQuery {
            after: p.after.unwrap_or(0),
            since: p.since,
            until: p.until,
            limit,
        })
        .await?
        .into_iter()
        .map(|r| ComplianceRecordView {
            id: r.id,
            record: r.record,
        })
        .collect();
    let next_after = if records.len() as u32 == limit {
        records.last().map(|r| r.id)
    } else {
        None
    };
    Ok(axum::Json(ComplianceRecordsResponse {
        records,
        next_after,
    }))
}

pub async fn mark(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<axum::Json<MarkResponse>> {
    let comp = store(&state, &caller)?;
    let through = comp.export_mark(job.clone()).await?;
    Ok(axum::Json(MarkResponse { job, through }))
}

/// Moves the mark only if it is at `from`; answers the mark after the call,
/// so the caller sees whether it won.
pub async fn move_mark(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(job): Path<String>,
    Json(req): Json<MoveMarkRequest>,
) -> ApiResult<axum::Json<MarkResponse>> {
    let comp = store(&state, &caller)?;
    let through = comp
        .move_export_mark(job.clone(), req.from, req.through)
        .await?;
    Ok(axum::Json(MarkResponse { job, through }))
}
