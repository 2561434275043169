//! `/api/v1/rooms/{id}/files`: upload a file (it is stored, then posted as
//! a message carrying its link) and download it (members only).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{Query, RoomIdPath};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pchat_api::{ErrorCode, MessageView};

use pchat_domain::{AccessKind, Command, FileRef, Outcome};
use pchat_store::blobs::{sha256_hex, Blobs};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The file's name, as shown in the room.
    name: String,
    client_msg_id: String,
    /// Text posted with the file (default: its name).
    body: Option<String>,
}

fn store(state: &AppState) -> ApiResult<Arc<dyn Blobs>> {
    state
        .config
        .files
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::FilesUnavailable, "this server keeps no files"))
}

/// The request body, refused past `max` bytes (without reading further).
async fn read_body(body: Body, max: u64) -> ApiResult<Vec<u8>> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the upload was interrupted: {e}"),
            )
        })?;
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(ApiError::new(
                ErrorCode::FileTooLarge,
                format!("the file is larger than {max} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `POST /api/v1/rooms/{id}/files?name=..&client_msg_id=..`, the raw
/// content as the body and its type as `Content-Type`.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RoomIdPath(room): RoomIdPath,
    Query(p): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let files = store(&state)?;
    // Check before taking the bytes, so refused uploads store nothing;
    // decide checks again when the message is posted.
    let view = super::rooms::visible_room(&state, &caller.user, room, false).await?;
    if !view.can_post {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "you may not post in this room",
        ));
    }
    let category = state
        .store
        .category(view.category)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::CategoryNotFound, "category not found"))?;
    if !category.file_upload {
        return Err(ApiError::new(
            ErrorCode::FileUploadOff,
            "file upload is off in this room's category",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let name = p.name.rsplit(['/', '\\']).next().unwrap_or("").to_string();
    let probe = FileRef {
        sha256: "0".repeat(64),
        size: 0,
        name: name.clone(),
        content_type: content_type.clone(),
    };
    if !probe.valid() {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            "the file needs a plain name (1 to 256 characters) and a content type of at most 128",
        ));
    }
    let max = u64::from(state.store.configuration().await?.max_file_size_kb) * 1000;
    let bytes = read_body(body, max).await?;
    let size = bytes.len();
    let sha256 = files.put(bytes).await?;
    let command = Command::PostFile {
        actor: caller.user.id,
        room,
        file: FileRef {
            sha256,
            size: size as i64,
            name,
            content_type,
        },
        body: p.body,
        client_msg_id: p.client_msg_id,
    };
    let Outcome::Message { message, created } = state.submit(command).await?.outcome else {
        return Err(ApiError::new(ErrorCode::Internal, "unexpected outcome"));
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(state.names.message(&message).await?)))
}

/// `GET /api/v1/rooms/{id}/files/{sha256}`: readers of the room only.
pub async fn download(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((room, sha256)): Path<(String, String)>,
) -> ApiResult<Response> {
    let files = store(&state)?;
    let room: i64 = room
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::RoomNotFound, "not a room id"))?;
    super::rooms::readable_room(&state, &caller.user, room).await?;
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such file in this room");
    let file = state
        .store
        .file_in_room(room, sha256.clone())
        .await?
        .ok_or_else(not_found)?;
    let bytes = files
        .get(file.sha256.clone())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the file's content is missing"))?;
    // The name is the checksum: never serve content that no longer matches it.
    if sha256_hex(&bytes) != file.sha256 {
        tracing::error!(sha256 = %file.sha256, "stored file is corrupt");
        return Err(ApiError::new(
            ErrorCode::Internal,
            "the stored file does not match its checksum",
        ));
    }
    state.record_access(
        &caller.user,
        room,
        AccessKind::FileDownload {
            file: format!("{} (sha256 {})", file.name, file.sha256),
        },
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.name.replace(['"', '\\'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}
