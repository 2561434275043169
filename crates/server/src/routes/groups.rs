//! `/api/v1/groups`: named sets of users and groups (administrators only).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{GroupIdPath, Json};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{CreateGroupRequest, ErrorCode, GroupView, GroupsResponse, PatchGroupRequest};
use pchat_domain::{Command, GroupChanges, GroupId, ListChange, Outcome};
use pchat_store::GroupDetails;
use std::sync::Arc;

fn view(d: GroupDetails) -> GroupView {
    GroupView {
        id: d.group.id,
        name: d.group.name,
        description: d.group.description,
        created_at: d.group.created_at,
        members: d.members,
    }
}

async fn load(state: &AppState, id: GroupId) -> ApiResult<GroupView> {
    state
        .store
        .group(id)
        .await?
        .map(view)
        .ok_or_else(|| ApiError::new(ErrorCode::GroupNotFound, "group not found"))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateGroupRequest>,
) -> ApiResult<(StatusCode, axum::Json<GroupView>)> {
    let command = Command::CreateGroup {
        actor: caller.actor(),
        group: Box::new(GroupChanges {
            name: Some(req.name),
            description: req.description,
            members: ListChange {
                add: req.members,
                ..ListChange::default()
            },
        }),
    };
    match state.submit(command).await?.outcome {
        Outcome::Group(g) => Ok((StatusCode::CREATED, axum::Json(load(&state, g.id).await?))),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<axum::Json<GroupsResponse>> {
    caller.require_admin()?;
    let groups = state.store.groups().await?.into_iter().map(view).collect();
    Ok(axum::Json(GroupsResponse { groups }))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    GroupIdPath(id): GroupIdPath,
) -> ApiResult<axum::Json<GroupView>> {
    caller.require_admin()?;
    Ok(axum::Json(load(&state, id).await?))
}

pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    GroupIdPath(id): GroupIdPath,
    Json(req): Json<PatchGroupRequest>,
) -> ApiResult<axum::Json<GroupView>> {
    let command = Command::UpdateGroup {
        actor: caller.actor(),
        group: id,
        changes: Box::new(GroupChanges {
            name: req.name,
            description: req.description,
            members: req.members.unwrap_or_default(),
        }),
    };
    state.submit(command).await?;
    Ok(axum::Json(load(&state, id).await?))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    GroupIdPath(id): GroupIdPath,
) -> ApiResult<StatusCode> {
    state
        .submit(Command::DeleteGroup {
            actor: caller.actor(),
            group: id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
