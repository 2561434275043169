//! `POST /api/v1/users` and `GET /api/v1/users` (administrators), and
//! `GET /api/v1/users/me`.

use crate::auth::{self, Caller};
use crate::error::ApiResult;
use crate::json::Json;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{CreateUserRequest, UserView, UsersResponse};
use pchat_domain::{Command, Outcome};
use std::sync::Arc;

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    if !caller.user.admin {
        return Err(pchat_domain::DomainError::Forbidden("administrators only".into()).into());
    }
    auth::check_password_policy(&req.password)?;
    if !pchat_domain::valid_name(&req.name) {
        // Refuse before paying for the hash; decide checks again.
        return Err(pchat_domain::DomainError::Invalid("invalid user name".into()).into());
    }
    let password_hash = auth::hash_password(req.password).await?;
    let command = Command::CreateUser {
        actor: caller.actor(),
        name: req.name,
        display_name: req.display_name,
        password_hash,
        admin: req.admin,
    };
    let done = state.submit(command).await?;
    match done.outcome {
        Outcome::User(u) => Ok((StatusCode::CREATED, axum::Json(UserView::from(&u)))),
        _ => Err(crate::error::ApiError::new(
            pchat_api::ErrorCode::Internal,
            "unexpected outcome",
        )),
    }
}

pub async fn me(caller: Caller) -> axum::Json<UserView> {
    axum::Json(UserView::from(&caller.user))
}

/// `GET /api/v1/users` (administrators): every user.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<axum::Json<UsersResponse>> {
    caller.require_admin()?;
    let users = state
        .store
        .users()
        .await?
        .iter()
        .map(UserView::from)
        .collect();
    Ok(axum::Json(UsersResponse { users }))
}
