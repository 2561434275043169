//! `/api/v1/rooms/{id}/messages`: post and read history.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{Json, Query, RoomIdPath};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use pchat_api::{
    ClearRoomRequest, ErrorCode, MessageView, MessagesResponse, PostMessageRequest,
    RemoveMessagesRequest, RemoveMessagesResponse, MAX_PAGE,
};
use pchat_domain::{
    Command, MessageChange, MessageFilter, Outcome, Seq, MAX_BODY_BYTES, REPLACED_TEXT,
};
use pchat_store::Page;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub async fn post(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(room): RoomIdPath,
    Json(req): Json<PostMessageRequest>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let started = Instant::now();
    if req.body.len() > MAX_BODY_BYTES {
        state.metrics.posts_refused.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            ErrorCode::MessageTooLarge,
            "message bodies are at most 16 KiB of UTF-8",
        ));
    }
    let command = Command::PostMessage {
        actor: caller.user.id,
        room,
        body: req.body,
        client_msg_id: req.client_msg_id,
        alert: req.alert,
    };
    let done = state.submit(command).await.inspect_err(|_| {
        state.metrics.posts_refused.fetch_add(1, Ordering::Relaxed);
    })?;
    let Outcome::Message { message, created } = done.outcome else {
        return Err(ApiError::new(ErrorCode::Internal, "unexpected outcome"));
    };
    let status = if created {
        state.metrics.posts.fetch_add(1, Ordering::Relaxed);
        state
            .metrics
            .ack_seconds
            .observe(started.elapsed().as_secs_f64());
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(state.names.message(&message).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    before: Option<Seq>,
    after: Option<Seq>,
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(room): RoomIdPath,
    Query(p): Query<HistoryParams>,
) -> ApiResult<axum::Json<MessagesResponse>> {
    super::rooms::readable_room(&state, &caller.user, room).await?;
    let limit = match p.limit {
        Some(l) => l,
        None => state
            .store
            .configuration()
            .await?
            .default_chat_history
            .unwrap_or(state.config.default_history),
    };
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let page = match (p.before, p.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "give before or after, not both",
            ))
        }
        (Some(seq), None) => Page::Before { seq, limit },
        (None, Some(seq)) => Page::After { seq, limit },
        (None, None) => Page::Latest { limit },
    };
    state.record_access(&caller.user, room, pchat_domain::AccessKind::History);
    let mut messages = Vec::new();
    for m in state.store.messages(room, page).await? {
        messages.push(state.names.message(&m).await?);
    }
    Ok(axum::Json(MessagesResponse { messages }))
}

/// `POST /api/v1/messages/remove` (administrators): remove or replace the
/// messages that match.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<RemoveMessagesRequest>,
) -> ApiResult<axum::Json<RemoveMessagesResponse>> {
    let change = match (req.remove, req.replacement) {
        (true, Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidValue,
                "give remove or replacement, not both",
            ))
        }
        (true, None) => MessageChange::Removed,
        (false, text) => MessageChange::Replaced(text.unwrap_or_else(|| REPLACED_TEXT.into())),
    };
    let command = Command::ChangeMessages {
        actor: caller.actor(),
        filter: MessageFilter {
            room: req.room,
            user: req.user,
            text: req.text,
            since: req.since,
            until: req.until,
        },
        change,
    };
    match state.submit(command).await?.outcome {
        Outcome::MessagesChanged { count } => Ok(axum::Json(RemoveMessagesResponse { count })),
        _ => Err(ApiError::new(ErrorCode::Internal, "unexpected outcome")),
    }
}

/// `POST /api/v1/rooms/{id}/clear` (administrators): remove every message
/// posted up to `until`.
pub async fn clear(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(room): RoomIdPath,
    Json(req): Json<ClearRoomRequest>,
) -> ApiResult<StatusCode> {
    state
        .submit(Command::ClearRoom {
            actor: caller.actor(),
            room,
            until: req.until,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
