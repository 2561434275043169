//! `/api/v1/rooms`: create, list, get, change.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{Json, RoomIdPath};
use crate::views::{caller as perm_caller, room_view};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{
    CategoryRef, CreateRoomRequest, ErrorCode, PatchRoomRequest, RoomView, RoomsResponse,
};
use pchat_domain::permissions::can_find;
use pchat_domain::{name_key, Actor, Command, Outcome, RoomChanges, RoomId, User};
use std::sync::Arc;

/// The room as `user` sees it, with role lists; `room_not_found` if they may not find it.
pub(crate) async fn visible_room(
    state: &AppState,
    user: &User,
    id: RoomId,
    with_roles: bool,
) -> ApiResult<RoomView> {
    let room = state
        .store
        .room(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "room not found"))?;
    let access = state.store.access(id, user.id).await?;
    if !can_find(&room, perm_caller(user, access)) {
        return Err(ApiError::new(ErrorCode::RoomNotFound, "room not found"));
    }
    let roles = if with_roles {
        Some(state.store.room_roles(id).await?)
    } else {
        None
    };
    Ok(room_view(room, user, access, roles))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateRoomRequest>,
) -> ApiResult<(StatusCode, axum::Json<RoomView>)> {
    let category = match req.category {
        CategoryRef::Id(id) => id,
        CategoryRef::Name(name) => state
            .store
            .categories()
            .await?
            .into_iter()
            .find(|c| name_key(&c.name) == name_key(&name))
            .map(|c| c.id)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::CategoryNotFound,
                    format!("no category named '{name}'"),
                )
            })?,
    };
    let command = Command::CreateRoom {
        actor: Actor::User(caller.user.id),
        name: req.name,
        category,
        description: req.description,
        privacy: req.privacy,
        room_type: req.room_type,
    };
    let done = state.submit(command).await?;
    let Outcome::Room(room) = done.outcome else {
        return Err(ApiError::new(ErrorCode::Internal, "unexpected outcome"));
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(visible_room(&state, &caller.user, room.id, true).await?),
    ))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<axum::Json<RoomsResponse>> {
    let rooms = state
        .store
        .rooms_with_access(caller.user.id)
        .await?
        .into_iter()
        .filter(|(room, access)| can_find(room, perm_caller(&caller.user, *access)))
        .map(|(room, access)| room_view(room, &caller.user, access, None))
        .collect();
    Ok(axum::Json(RoomsResponse { rooms }))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
) -> ApiResult<axum::Json<RoomView>> {
    Ok(axum::Json(
        visible_room(&state, &caller.user, id, true).await?,
    ))
}

pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
    Json(req): Json<PatchRoomRequest>,
) -> ApiResult<axum::Json<RoomView>> {
    let changes = RoomChanges {
        name: req.name,
        description: req.description,
        privacy: req.privacy,
        room_type: req.room_type,
        members: req.members.unwrap_or_default(),
        managers: req.managers.unwrap_or_default(),
        presenters: req.presenters.unwrap_or_default(),
    };
    let command = Command::UpdateRoom {
        actor: Actor::User(caller.user.id),
        room: id,
        changes: Box::new(changes),
    };
    state.submit(command).await?;
    Ok(axum::Json(
        visible_room(&state, &caller.user, id, true).await?,
    ))
}
