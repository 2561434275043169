//! What happened: the contents of a database's transaction log.

use crate::model::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    UserCreated {
        user: User,
        password_hash: String,
    },
    SessionCreated {
        token_hash: String,
        user: UserId,
        at: Timestamp,
    },
    SessionEnded {
        token_hash: String,
    },
    CategoryCreated {
        category: Category,
    },
    /// A new room; its creator is its first manager.
    RoomCreated {
        room: RoomInfo,
    },
    /// New values of a room's properties (not its role lists).
    RoomUpdated {
        room: RoomInfo,
    },
    RoleGranted {
        room: RoomId,
        role: Role,
        users: Vec<UserId>,
    },
    RoleRevoked {
        room: RoomId,
        role: Role,
        users: Vec<UserId>,
    },
    MessagePosted {
        message: Message,
    },
}

/// One entry of a transaction log. `E` is the database's event type: chat
/// events in `mgc`, compliance events in `mgccomp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord<E = Event> {
    pub lsn: Lsn,
    pub ts: Timestamp,
    /// The chat server whose command produced the event.
    pub origin: String,
    pub event: E,
}
