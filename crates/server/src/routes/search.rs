//! `GET /api/v1/search`: full-text search over the rooms the caller may read.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::Query;
use crate::views::caller as perm_caller;
use crate::AppState;
use axum::extract::State;
use pchat_api::{ErrorCode, SearchHitView, SearchResponse, MAX_PAGE};
use pchat_domain::permissions::can_read;
use pchat_domain::RoomId;
use pchat_store::{SearchHit, SearchQuery};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    q: Option<String>,
    room: Option<RoomId>,
    limit: Option<u32>,
    before: Option<String>,
}

pub async fn search(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(p): Query<SearchParams>,
) -> ApiResult<axum::Json<SearchResponse>> {
    let text =
        p.q.filter(|q| !q.trim().is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "q is required"))?;
    let limit = p.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let before = cursor(p.before)?;
    let rooms: Vec<RoomId> = match p.room {
        Some(room) => {
            let info = super::rooms::readable_room(&state, &caller.user, room).await?;
            if info.disabled {
                vec![]
            } else {
                vec![room]
            }
        }
        None => state
            .store
            .rooms_with_access(caller.user.id)
            .await?
            .into_iter()
            .filter(|(r, a)| !r.disabled && can_read(r, perm_caller(&caller.user, *a)))
            .map(|(r, _)| r.id)
            .collect(),
    };
    let found = state
        .store
        .search(SearchQuery {
            text,
            rooms,
            limit,
            before,
        })
        .await?;
    Ok(axum::Json(page(&state, found, limit).await?))
}

/// A `before` paging cursor (a hit's id).
pub(crate) fn cursor(before: Option<String>) -> ApiResult<Option<i64>> {
    match before {
        None => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::new(ErrorCode::InvalidQuery, "before is not a cursor")),
    }
}

/// A page of hits, newest first, with the cursor of the next page when full.
pub(crate) async fn page(
    state: &AppState,
    found: Vec<SearchHit>,
    limit: u32,
) -> ApiResult<SearchResponse> {
    let next_before = if found.len() as u32 == limit {
        found.last().map(|h| h.id.to_string())
    } else {
        None
    };
    let mut hits = Vec::with_capacity(found.len());
    for h in found {
        hits.push(SearchHitView {
            cursor: h.id.to_string(),
            message: state.names.message(&h.message).await?,
        });
    }
    Ok(SearchResponse { hits, next_before })
}
