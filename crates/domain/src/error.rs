//! Why the domain refuses a command.

use thiserror::Error;

/// A refusal by the chat model. Each variant maps to one stable API error code
/// (see `pchat-api`'s error table).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("unknown user: {0}")]
    UnknownUser(String),
    #[error("unknown group: {0}")]
    UnknownGroup(String),
    #[error("the category does not allow {0}")]
    NotAllowedByCategory(String),
    #[error("the category still has {0} room(s); move or delete them first")]
    CategoryNotEmpty(i64),
    #[error("{what} name '{name}' is already taken")]
    NameTaken { what: &'static str, name: String },
    #[error("client_msg_id '{0}' was already used for another room")]
    ClientMsgIdReused(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the room is disabled")]
    RoomDisabled,
}
