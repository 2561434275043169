//! `/api/v1/rooms`: create, list, get, change, delete; invitations, join,
//! leave; who the role lists reach.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{Json, RoomIdPath};
use crate::views::{caller as perm_caller, room_view, Directory};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{
    CategoryRef, CreateRoomRequest, EligibleResponse, EligibleView, ErrorCode, InvitationView,
    InvitationsResponse, InviteRequest, PatchRoomRequest, RoomView, RoomsResponse,
};
use pchat_domain::permissions::{can_find, can_manage, can_read};
use pchat_domain::{
    name_key, CategoryId, Command, ListChange, Outcome, RoomChanges, RoomId, RoomInfo, User,
};
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
    let dir = Directory::load(state.store.as_ref()).await?;
    Ok(room_view(room, user, access, roles, &dir))
}

/// The room, if `user` may read it: `room_not_found` if they may not find
/// it, `forbidden` if they may find but not read it. Two reads; what
/// history, search and downloads check before they read.
pub(crate) async fn readable_room(
    state: &AppState,
    user: &User,
    id: RoomId,
) -> ApiResult<RoomInfo> {
    let room = state
        .store
        .room(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "room not found"))?;
    let me = perm_caller(user, state.store.access(id, user.id).await?);
    if !can_find(&room, me) {
        return Err(ApiError::new(ErrorCode::RoomNotFound, "room not found"));
    }
    if !can_read(&room, me) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only members read this room",
        ));
    }
    Ok(room)
}

pub(crate) async fn category_id(state: &AppState, r: CategoryRef) -> ApiResult<CategoryId> {
    match r {
        CategoryRef::Id(id) => Ok(id),
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
            }),
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateRoomRequest>,
) -> ApiResult<(StatusCode, axum::Json<RoomView>)> {
    let category = category_id(&state, req.category).await?;
    // The creator becomes a manager; a list given here adds to that.
    let mut managers = ListChange::set(req.managers);
    if let Some(list) = managers.replace.take() {
        managers.add = list;
    }
    let command = Command::CreateRoom {
        actor: caller.actor(),
        category,
        room: Box::new(RoomChanges {
            name: Some(req.name),
            description: req.description,
            privacy: req.privacy,
            room_type: req.room_type,
            category: None,
            disabled: req.disabled,
            invitations: req.invitations,
            addin: req.addin.map(Some),
            members: ListChange::set(req.members),
            managers,
            presenters: ListChange::set(req.presenters),
        }),
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
    let dir = Directory::load(state.store.as_ref()).await?;
    let rooms = state
        .store
        .rooms_with_access(caller.user.id)
        .await?
        .into_iter()
        .filter(|(room, access)| can_find(room, perm_caller(&caller.user, *access)))
        .map(|(room, access)| room_view(room, &caller.user, access, None, &dir))
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
    let category = match req.category {
        Some(r) => Some(category_id(&state, r).await?),
        None => None,
    };
    let changes = RoomChanges {
        name: req.name,
        description: req.description,
        privacy: req.privacy,
        room_type: req.room_type,
        category,
        disabled: req.disabled,
        invitations: req.invitations,
        addin: req.addin,
        members: req.members.unwrap_or_default(),
        managers: req.managers.unwrap_or_default(),
        presenters: req.presenters.unwrap_or_default(),
    };
    let command = Command::UpdateRoom {
        actor: caller.actor(),
        room: id,
        changes: Box::new(changes),
    };
    state.submit(command).await?;
    Ok(axum::Json(
        visible_room(&state, &caller.user, id, true).await?,
    ))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
) -> ApiResult<StatusCode> {
    state
        .submit(Command::DeleteRoom {
            actor: caller.actor(),
            room: id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn invite(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
    Json(req): Json<InviteRequest>,
) -> ApiResult<(StatusCode, axum::Json<RoomView>)> {
    state
        .submit(Command::Invite {
            actor: caller.actor(),
            room: id,
            user: req.user,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(visible_room(&state, &caller.user, id, true).await?),
    ))
}

pub async fn join(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
) -> ApiResult<axum::Json<RoomView>> {
    state
        .submit(Command::JoinRoom {
            actor: caller.user.id,
            room: id,
        })
        .await?;
    Ok(axum::Json(
        visible_room(&state, &caller.user, id, true).await?,
    ))
}

pub async fn leave(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
) -> ApiResult<StatusCode> {
    state
        .submit(Command::LeaveRoom {
            actor: caller.user.id,
            room: id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /rooms/{id}/eligible`: every user the role lists reach (through
/// groups), with effective roles and the category's verdict. Managers and
/// administrators.
pub async fn eligible(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(id): RoomIdPath,
) -> ApiResult<axum::Json<EligibleResponse>> {
    let room = state
        .store
        .room(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "room not found"))?;
    let access = state.store.access(id, caller.user.id).await?;
    let me = perm_caller(&caller.user, access);
    if !can_find(&room, me) {
        return Err(ApiError::new(ErrorCode::RoomNotFound, "room not found"));
    }
    if !can_manage(&room, me) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the room's managers and administrators see this",
        ));
    }
    let users = state
        .store
        .eligible(id)
        .await?
        .into_iter()
        .map(|(u, a)| EligibleView {
            name: u.name,
            roles: pchat_domain::Role::ALL
                .iter()
                .filter(|r| a.has(**r))
                .map(|r| r.as_str().to_string())
                .collect(),
            allowed: a.allowed,
        })
        .collect();
    Ok(axum::Json(EligibleResponse { users }))
}

/// `GET /invitations`: the rooms the caller is invited to.
pub async fn invitations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<axum::Json<InvitationsResponse>> {
    let mut out = Vec::new();
    for inv in state.store.invitations(caller.user.id).await? {
        // An invitation to a room the category now walls off is not shown.
        let Ok(room) = visible_room(&state, &caller.user, inv.room, false).await else {
            continue;
        };
        let by = match inv.by {
            Some(id) => Some(state.names.get(id).await?.to_string()),
            None => None,
        };
        out.push(InvitationView { room, by });
    }
    Ok(axum::Json(InvitationsResponse { invitations: out }))
}
