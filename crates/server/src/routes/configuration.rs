//! `/api/v1/configuration`: the pool's settings (everyone signed in reads
//! them; administrators change them).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::AppState;
use axum::extract::State;
use pchat_api::{ConfigurationView, ErrorCode, PatchConfigurationRequest};
use pchat_domain::{Command, ConfigChanges, Outcome, PoolConfig};
use std::sync::Arc;

fn view(c: PoolConfig) -> ConfigurationView {
    ConfigurationView {
        default_chat_history: c.default_chat_history,
        max_file_size_kb: c.max_file_size_kb,
        participant_update_limit: c.participant_update_limit,
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> ApiResult<axum::Json<ConfigurationView>> {
    Ok(axum::Json(view(state.store.configuration().await?)))
}

pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<PatchConfigurationRequest>,
) -> ApiResult<axum::Json<ConfigurationView>> {
    let command = Command::SetConfiguration {
        actor: caller.actor(),
        changes: ConfigChanges {
            default_chat_history: req.default_chat_history,
            max_file_size_kb: req.max_file_size_kb,
            participant_update_limit: req.participant_update_limit,
        },
    };
    match state.submit(command).await?.outcome {
        Outcome::Configuration(c) => Ok(axum::Json(view(c))),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}
