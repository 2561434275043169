//! `POST /api/v1/categories` (administrators) and `GET /api/v1/categories`.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{CategoryView, CreateCategoryRequest, ErrorCode};
use pchat_domain::{Actor, Command, Outcome};
use std::sync::Arc;

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateCategoryRequest>,
) -> ApiResult<(StatusCode, axum::Json<CategoryView>)> {
    let command = Command::CreateCategory {
        actor: Actor::User(caller.user.id),
        name: req.name,
        description: req.description,
    };
    let done = state.submit(command).await?;
    match done.outcome {
        Outcome::Category(c) => Ok((StatusCode::CREATED, axum::Json(CategoryView::from(c)))),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let cats: Vec<CategoryView> = state
        .store
        .categories()
        .await?
        .into_iter()
        .map(CategoryView::from)
        .collect();
    Ok(axum::Json(serde_json::json!({ "categories": cats })))
}
