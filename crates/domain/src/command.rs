//! What clients and administrators ask for.

use crate::model::*;
use serde::{Deserialize, Serialize};

/// Who asks. `System` is the operator at the machine (the CLI against a data
/// directory, the bootstrap administrator): it passes every permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    System,
    User(UserId),
}

/// Changes to one role list of a room: `replace` (when given) sets the list,
/// then `add` and `remove` apply. Entries are user names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub replace: Option<Vec<String>>,
}

impl ListChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.replace.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub privacy: Option<Privacy>,
    pub room_type: Option<RoomType>,
    pub members: ListChange,
    pub managers: ListChange,
    pub presenters: ListChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `password_hash` is computed by the chat server (hashing is slow and
    /// random, so it stays out of the deterministic decide step).
    CreateUser {
        actor: Actor,
        name: String,
        display_name: Option<String>,
        password_hash: String,
        admin: bool,
    },
    /// Creates the first administrator, only while no user exists.
    BootstrapAdmin {
        name: String,
        password_hash: String,
    },
    /// Issued after the chat server has checked the password.
    CreateSession {
        user: UserId,
        token_hash: String,
    },
    EndSession {
        token_hash: String,
    },
    CreateCategory {
        actor: Actor,
        name: String,
        description: Option<String>,
    },
    CreateRoom {
        actor: Actor,
        name: String,
        category: CategoryId,
        description: Option<String>,
        privacy: Option<Privacy>,
        room_type: Option<RoomType>,
    },
    UpdateRoom {
        actor: Actor,
        room: RoomId,
        changes: Box<RoomChanges>,
    },
    PostMessage {
        actor: UserId,
        room: RoomId,
        body: String,
        client_msg_id: String,
        alert: bool,
    },
}

/// A command with the name of the chat server that sent it; the name is kept
/// in the log and in compliance records ("which server").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub origin: String,
    pub command: Command,
}
