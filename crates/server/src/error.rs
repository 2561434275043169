//! API errors: a code from the table in `pchat_api`, a message, and the JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pchat_api::{ErrorBody, ErrorCode, ErrorDetail};
use pchat_domain::DomainError;
use pchat_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.code().into(),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.code.code(), message = %self.message, "request failed");
        }
        (status, axum::Json(self.body())).into_response()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let code = match &e {
            DomainError::Invalid(_) => ErrorCode::InvalidValue,
            DomainError::NotFound(what) => match what.as_ref() {
                "room" => ErrorCode::RoomNotFound,
                "category" => ErrorCode::CategoryNotFound,
                "user" => ErrorCode::UserNotFound,
                "group" => ErrorCode::GroupNotFound,
                "add-in" => ErrorCode::AddInNotFound,
                _ => ErrorCode::NotFound,
            },
            DomainError::UnknownUser(_) => ErrorCode::UnknownUser,
            DomainError::UnknownGroup(_) => ErrorCode::UnknownGroup,
            DomainError::NotAllowedByCategory(_) => ErrorCode::NotAllowedByCategory,
            DomainError::CategoryNotEmpty(_) => ErrorCode::CategoryNotEmpty,
            DomainError::NameTaken { .. } => ErrorCode::NameTaken,
            DomainError::ClientMsgIdReused(_) => ErrorCode::ClientMsgIdReused,
            DomainError::Forbidden(_) => ErrorCode::Forbidden,
            DomainError::RoomDisabled => ErrorCode::RoomDisabled,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d.into(),
            // The database server fences this chat server: it is not active
            // in the newest pool configuration there.
            StoreError::Unavailable(m) if m.starts_with("fenced") => {
                ApiError::new(ErrorCode::ServerInactive, m)
            }
            StoreError::Unavailable(m) => ApiError::new(ErrorCode::Unavailable, m),
            StoreError::Internal(m) => ApiError::new(ErrorCode::Internal, m),
        }
    }
}
