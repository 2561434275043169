//! `/api/v1/categories`: create, list, get, change, remove (administrators
//! change; everyone signed in lists them, administrators see the lists).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{CategoryIdPath, Json};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{
    CategoriesResponse, CategoryView, CreateCategoryRequest, ErrorCode, PatchCategoryRequest,
};
use pchat_domain::{CategoryChanges, CategoryId, Command, ListChange, Outcome};
use std::sync::Arc;

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateCategoryRequest>,
) -> ApiResult<(StatusCode, axum::Json<CategoryView>)> {
    let command = Command::CreateCategory {
        actor: caller.actor(),
        category: Box::new(CategoryChanges {
            name: Some(req.name),
            description: req.description,
            file_upload: req.file_upload,
            invitations: req.invitations,
            chat_history: req.chat_history,
            allowed: ListChange::set(req.allowed),
            denied: ListChange::set(req.denied),
            creators: ListChange::set(req.creators),
        }),
    };
    let done = state.submit(command).await?;
    match done.outcome {
        Outcome::Category(c) => Ok((StatusCode::CREATED, axum::Json(view(&state, c.id).await?))),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

/// The category with its lists.
async fn view(state: &AppState, id: CategoryId) -> ApiResult<CategoryView> {
    let category = state
        .store
        .category(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::CategoryNotFound, "category not found"))?;
    let lists = state.store.category_lists(id).await?;
    Ok(CategoryView {
        allowed: Some(lists.allowed),
        denied: Some(lists.denied),
        creators: Some(lists.creators),
        ..CategoryView::from(category)
    })
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<axum::Json<CategoriesResponse>> {
    let mut categories = Vec::new();
    for c in state.store.categories().await? {
        categories.push(if caller.user.admin {
            view(&state, c.id).await?
        } else {
            CategoryView::from(c)
        });
    }
    Ok(axum::Json(CategoriesResponse { categories }))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    CategoryIdPath(id): CategoryIdPath,
) -> ApiResult<axum::Json<CategoryView>> {
    let v = view(&state, id).await?;
    if caller.user.admin {
        Ok(axum::Json(v))
    } else {
        Ok(axum::Json(CategoryView {
            allowed: None,
            denied: None,
            creators: None,
            ..v
        }))
    }
}

pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    CategoryIdPath(id): CategoryIdPath,
    Json(req): Json<PatchCategoryRequest>,
) -> ApiResult<axum::Json<CategoryView>> {
    let command = Command::UpdateCategory {
        actor: caller.actor(),
        category: id,
        changes: Box::new(CategoryChanges {
            name: req.name,
            description: req.description,
            file_upload: req.file_upload,
            invitations: req.invitations,
            chat_history: req.chat_history,
            allowed: req.allowed.unwrap_or_default(),
            denied: req.denied.unwrap_or_default(),
            creators: req.creators.unwrap_or_default(),
        }),
    };
    state.submit(command).await?;
    Ok(axum::Json(view(&state, id).await?))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    CategoryIdPath(id): CategoryIdPath,
) -> ApiResult<StatusCode> {
    state
        .submit(Command::DeleteCategory {
            actor: caller.actor(),
            category: id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
