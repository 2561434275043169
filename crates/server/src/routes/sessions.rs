//! `POST /api/v1/sessions` (sign in) and `DELETE /api/v1/sessions` (sign out).

use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{ErrorCode, SessionRequest, SessionResponse, UserView};
use pchat_domain::Command;
use std::sync::Arc;

/// A hash of a random password, checked when the user does not exist, so a
/// wrong name takes as long as a wrong password.
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

pub async fn create(
    State(state): State<Arc<AppState>>,
    Json(req): Json<SessionRequest>,
) -> ApiResult<(StatusCode, axum::Json<SessionResponse>)> {
    let found = state.store.credentials(req.name.clone()).await?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (
            None,
            DUMMY_HASH
                .get_or_try_init(|| auth::hash_password("no such user".into()))
                .await?
                .clone(),
        ),
    };
    let ok = auth::verify_password(req.password, hash).await;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "wrong user name or password",
        ));
    };
    let (token, token_hash) = auth::new_token()?;
    state
        .submit(Command::CreateSession {
            user: user.id,
            token_hash,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SessionResponse {
            token,
            user: UserView::from(&user),
        }),
    ))
}

pub async fn delete(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<StatusCode> {
    let token_hash = caller.token_hash.clone();
    state.submit(Command::EndSession { token_hash }).await?;
    state.sessions.forget(&caller.token_hash);
    Ok(StatusCode::NO_CONTENT)
}
