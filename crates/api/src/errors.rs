//! The error codes of the API: one table, stable names.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:literal, $hint:literal;)*) => {
        /// Every error the API answers with. The code strings are stable: clients
        /// may match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];
            pub fn code(self) -> &'static str { match self { $(ErrorCode::$variant => $code,)* } }
            pub fn status(self) -> u16 { match self { $(ErrorCode::$variant => $status,)* } }
            /// What the caller can do about it.
            pub fn hint(self) -> &'static str { match self { $(ErrorCode::$variant => $hint,)* } }
        }
    };
}

error_codes! {
    MalformedJson => "malformed_json", 400, "The request body is not valid JSON.";
    InvalidUtf8 => "invalid_utf8", 400, "The request body is not valid UTF-8.";
    InvalidRequest => "invalid_request", 422, "A field is missing, unknown or of the wrong type; see docs/API.md.";
    InvalidValue => "invalid_value", 422, "A field's value is out of range (length, characters, limits).";
    InvalidQuery => "invalid_query", 400, "A query parameter is missing or malformed.";
    MessageTooLarge => "message_too_large", 413, "Message bodies are at most 16 KiB of UTF-8.";
    PayloadTooLarge => "payload_too_large", 413, "The request body is too large.";
    FileTooLarge => "file_too_large", 413, "Files are at most MaxFileSizeKB (GET /api/v1/configuration).";
    FileUploadOff => "file_upload_off", 403, "The room's category does not allow file uploads.";
    FilesUnavailable => "files_unavailable", 503, "This server keeps no file store.";
    Unauthorized => "unauthorized", 401, "Send `Authorization: Bearer <token>` with a token from POST /api/v1/sessions.";
    InvalidCredentials => "invalid_credentials", 401, "The user name or password is wrong.";
    Forbidden => "forbidden", 403, "Your roles do not allow this.";
    RoomDisabled => "room_disabled", 403, "The room is disabled; it takes no posts.";
    NotFound => "not_found", 404, "No such resource, or you may not see it.";
    RoomNotFound => "room_not_found", 404, "No such room, or you may not see it.";
    CategoryNotFound => "category_not_found", 404, "No such category.";
    UserNotFound => "user_not_found", 404, "No such user.";
    UnknownUser => "unknown_user", 422, "A user named in a list does not exist.";
    UnknownGroup => "unknown_group", 422, "A group named in a list (group:NAME) does not exist.";
    NotAllowedByCategory => "not_allowed_by_category", 422, "The room's category does not allow (or denies) this user or group; change the category's lists first.";
    CategoryNotEmpty => "category_not_empty", 409, "A category is removed only when it has no rooms; move or delete them first.";
    GroupNotFound => "group_not_found", 404, "No such group.";
    AddInNotFound => "addin_not_found", 404, "No such add-in.";
    MethodNotAllowed => "method_not_allowed", 405, "The path exists but not with this method.";
    NameTaken => "name_taken", 409, "Names are unique (ignoring case); choose another.";
    ClientMsgIdReused => "client_msg_id_reused", 409, "Use a new client_msg_id for each new message.";
    Unavailable => "unavailable", 503, "The database cannot take work now; retry (posts with the same client_msg_id).";
    ComplianceUnavailable => "compliance_unavailable", 503, "This server has no compliance database to read; ask one that runs the recorder.";
    ShuttingDown => "shutting_down", 503, "The server is shutting down; reconnect and retry.";
    ServerInactive => "server_inactive", 503, "This chat server is not active in the pool (or cannot learn the pool configuration); GET /api/v1/pool names the active servers: connect to one of them.";
    NoTopology => "no_topology", 404, "This chat server runs outside a pool topology; the DR dashboard needs `pchat serve --topology`.";
    RunbookRunning => "runbook_running", 409, "A runbook is running already; follow it (GET /api/v1/admin/runbooks/run) and start the next when it ends.";
    Internal => "internal", 500, "An unexpected error; see the server log.";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "duplicate {}", c.code());
            assert!(c
                .code()
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'));
            assert!((400..600).contains(&c.status()));
            assert!(!c.hint().is_empty());
        }
    }
}
