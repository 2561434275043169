//! What happened: the contents of a database's transaction log.

use crate::command::{AccessKind, MessageChange};
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
    GroupCreated {
        group: Group,
    },
    GroupUpdated {
        group: Group,
    },
    GroupMembersChanged {
        group: GroupId,
        added: Vec<Principal>,
        removed: Vec<Principal>,
    },
    /// The group and every list entry that names it are gone.
    GroupDeleted {
        group: GroupId,
    },
    CategoryCreated {
        category: Category,
    },
    CategoryUpdated {
        category: Category,
    },
    CategoryListChanged {
        category: CategoryId,
        list: CategoryList,
        added: Vec<Principal>,
        removed: Vec<Principal>,
    },
    CategoryDeleted {
        category: CategoryId,
    },
    /// A new room; its creator is its first manager.
    RoomCreated {
        room: RoomInfo,
    },
    /// New values of a room's properties (not its role lists).
    RoomUpdated {
        room: RoomInfo,
    },
    /// The room, its role lists, invitations and history are gone.
    RoomDeleted {
        room: RoomId,
    },
    RoleGranted {
        room: RoomId,
        role: Role,
        principals: Vec<Principal>,
    },
    RoleRevoked {
        room: RoomId,
        role: Role,
        principals: Vec<Principal>,
    },
    Invited {
        room: RoomId,
        user: UserId,
        by: Option<UserId>,
    },
    /// Accepted (the user joined) or declined.
    InvitationClosed {
        room: RoomId,
        user: UserId,
    },
    AddInCreated {
        addin: AddIn,
    },
    AddInDeleted {
        addin: AddInId,
    },
    MessagePosted {
        message: Message,
        /// The category keeps no history: deliver live, record for
        /// compliance, keep only what idempotent retries need.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unkept: bool,
    },
    /// An administrator removed or replaced these messages of a room.
    MessagesChanged {
        room: RoomId,
        seqs: Vec<Seq>,
        change: MessageChange,
    },
    /// History put into a room by `import-data`, in sequence order.
    MessagesImported {
        room: RoomId,
        messages: Vec<Message>,
    },
    FeedSaved {
        feed: Feed,
    },
    FeedDeleted {
        user: UserId,
        feed: FeedId,
    },
    ConfigurationSet {
        config: PoolConfig,
    },
    /// A user read history or downloaded a file (kept for compliance only).
    Accessed {
        user: UserId,
        room: RoomId,
        access: AccessKind,
    },
    /// An administrator removed every message of the room posted up to `until`.
    RoomCleared {
        room: RoomId,
        until: Timestamp,
    },
}

impl Event {
    /// The uploaded files (SHA-256) this event posts: what a log backup or
    /// a mirror must carry with it.
    pub fn files(&self) -> Vec<&str> {
        fn of(m: &crate::Message) -> Option<&str> {
            m.file.as_ref().map(|f| f.sha256.as_str())
        }
        match self {
            Event::MessagePosted { message, .. } => of(message).into_iter().collect(),
            Event::MessagesImported { messages, .. } => messages.iter().filter_map(of).collect(),
            _ => Vec::new(),
        }
    }
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
