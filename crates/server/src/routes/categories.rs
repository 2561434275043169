//! `POST /api/v1/categories` (administrators) and `GET /api/v1/categories`.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{CategoryView, CreateCategoryRequest, ErrorCode};
use pchat_domain::{Actor, Category, Command, Envelope, Outcome};
use std::sync::Arc;

fn view(c: Category) -> CategoryView {
    CategoryView {
        id: c.id,
        name: c.name,
        description: c.description,
        created_at: c.created_at,
    }
}

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
    let done = state
        .store
        .submit(Envelope {
            origin: state.config.server_name.clone(),
            command,
        })
        .await?;
    match done.outcome {
        Outcome::Category(c) => Ok((StatusCode::CREATED, axum::Json(view(c)))),
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
        .map(view)
        .collect();
    Ok(axum::Json(serde_json::json!({ "categories": cats })))
}
