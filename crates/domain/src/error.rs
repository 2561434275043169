//! Why the domain refuses a command.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use thiserror::Error;

/// Text of a refusal: usually a fixed message, owned when it crossed the wire.
pub type Text = Cow<'static, str>;

/// A refusal by the chat model. Each variant maps to one stable API error code
/// (see `pchat-api`'s error table).
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(Text),
    #[error("unknown user: {0}")]
    UnknownUser(String),
    #[error("unknown group: {0}")]
    UnknownGroup(String),
    #[error("the category does not allow {0}")]
    NotAllowedByCategory(String),
    #[error("the category still has {0} room(s); move or delete them first")]
    CategoryNotEmpty(i64),
    #[error("{what} name '{name}' is already taken")]
    NameTaken { what: Text, name: String },
    #[error("client_msg_id '{0}' was already used for another room")]
    ClientMsgIdReused(String),
    #[error("{0}")]
    Forbidden(Text),
    #[error("the room is disabled")]
    RoomDisabled,
}
