//! `/api/v1/addins`: named web pages shown with rooms (administrators
//! create and remove them; everyone signed in lists them).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pchat_api::{AddInView, AddInsResponse, CreateAddInRequest, ErrorCode};
use pchat_domain::{Command, Outcome};
use std::sync::Arc;

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateAddInRequest>,
) -> ApiResult<(StatusCode, axum::Json<AddInView>)> {
    let command = Command::CreateAddIn {
        actor: caller.actor(),
        name: req.name,
        url: req.url,
    };
    match state.submit(command).await?.outcome {
        Outcome::AddIn(a) => Ok((
            StatusCode::CREATED,
            axum::Json(AddInView {
                name: a.name,
                url: a.url,
            }),
        )),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> ApiResult<axum::Json<AddInsResponse>> {
    let addins = state
        .store
        .addins()
        .await?
        .into_iter()
        .map(|a| AddInView {
            name: a.name,
            url: a.url,
        })
        .collect();
    Ok(axum::Json(AddInsResponse { addins }))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .submit(Command::DeleteAddIn {
            actor: caller.actor(),
            name,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
