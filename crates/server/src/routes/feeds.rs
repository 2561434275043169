//! `/api/v1/feeds`: the caller's topic feeds, and the messages that match
//! one (live delivery is on the WebSocket: `follow_feeds`).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{Json, Query};
use crate::views::caller as perm_caller;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pchat_api::{ErrorCode, FeedView, FeedsResponse, SaveFeedRequest, SearchResponse, MAX_PAGE};
use pchat_domain::permissions::can_read;
use pchat_domain::{Command, Feed, Outcome, RoomId};
use serde::Deserialize;
use std::sync::Arc;

async fn view(state: &AppState, f: Feed) -> ApiResult<FeedView> {
    let mut senders = Vec::new();
    for s in &f.senders {
        senders.push(state.names.get(*s).await?.to_string());
    }
    Ok(FeedView {
        id: f.id,
        name: f.name,
        words: f.words,
        senders,
        rooms: f.rooms,
    })
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Feed> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such feed");
    let id: i64 = id.parse().map_err(|_| not_found())?;
    state
        .store
        .feeds(caller.user.id)
        .await?
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(not_found)
}

/// `POST /api/v1/feeds`: saves a feed (a feed of the same name is replaced).
pub async fn save(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<SaveFeedRequest>,
) -> ApiResult<(StatusCode, axum::Json<FeedView>)> {
    let command = Command::SaveFeed {
        actor: caller.user.id,
        name: req.name,
        words: req.words,
        senders: req.senders,
        rooms: req.rooms,
    };
    match state.submit(command).await?.outcome {
        Outcome::Feed(f) => Ok((StatusCode::CREATED, axum::Json(view(&state, f).await?))),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<axum::Json<FeedsResponse>> {
    let mut feeds = Vec::new();
    for f in state.store.feeds(caller.user.id).await? {
        feeds.push(view(&state, f).await?);
    }
    Ok(axum::Json(FeedsResponse { feeds }))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let feed = find(&state, &caller, &id).await?;
    state
        .submit(Command::DeleteFeed {
            actor: caller.user.id,
            feed: feed.id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    limit: Option<u32>,
    before: Option<String>,
}

/// `GET /api/v1/feeds/{id}/messages`: matching messages, newest first, in
/// the rooms the caller may read now.
pub async fn messages(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<SearchResponse>> {
    let feed = find(&state, &caller, &id).await?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let before = super::search::cursor(p.before)?;
    let rooms: Vec<RoomId> = state
        .store
        .rooms_with_access(caller.user.id)
        .await?
        .into_iter()
        .filter(|(r, a)| {
            !r.disabled
                && can_read(r, perm_caller(&caller.user, *a))
                && (feed.rooms.is_empty() || feed.rooms.contains(&r.id))
        })
        .map(|(r, _)| r.id)
        .collect();
    let found = state
        .store
        .feed_messages(feed, rooms, before, limit)
        .await?;
    Ok(axum::Json(super::search::page(&state, found, limit).await?))
}
