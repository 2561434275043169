//! pchat's wire shapes: HTTP request and response bodies, WebSocket frames,
//! and the one table of error codes (code, HTTP status, hint).
//!
//! Both the chat server and its clients (the CLI, the bench tool, tests) use
//! these types, so the two sides cannot drift apart. Every error answer is
//! `{"error": {"code": "...", "message": "..."}}` with a code from [`ErrorCode`].
//!
//! This crate holds data only: no IO, no HTTP framework.

use pchat_domain::{
    Category, CategoryId, ListChange, Privacy, RoomId, RoomType, Seq, Timestamp, User, UserId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod errors;
pub use errors::{ErrorBody, ErrorCode, ErrorDetail};

/// Default number of messages returned on join (Lync's DefaultChatHistory).
pub const DEFAULT_HISTORY: u32 = 30;
/// Largest `limit` accepted by history and search.
pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionResponse {
    pub token: String,
    pub user: UserView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub admin: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id,
            name: u.name.clone(),
            display_name: u.display_name.clone(),
            admin: u.admin,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCategoryRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryView {
    pub id: CategoryId,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
}

impl From<Category> for CategoryView {
    fn from(c: Category) -> Self {
        CategoryView {
            id: c.id,
            name: c.name,
            description: c.description,
            created_at: c.created_at,
        }
    }
}

/// A category named by id or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CategoryRef {
    Id(CategoryId),
    Name(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    pub name: String,
    pub category: CategoryRef,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub privacy: Option<Privacy>,
    #[serde(default, rename = "type")]
    pub room_type: Option<RoomType>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRoomRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub privacy: Option<Privacy>,
    #[serde(default, rename = "type")]
    pub room_type: Option<RoomType>,
    #[serde(default)]
    pub members: Option<ListChange>,
    #[serde(default)]
    pub managers: Option<ListChange>,
    #[serde(default)]
    pub presenters: Option<ListChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    pub id: RoomId,
    pub name: String,
    pub category: CategoryId,
    pub description: String,
    pub privacy: Privacy,
    #[serde(rename = "type")]
    pub room_type: RoomType,
    pub disabled: bool,
    pub created_by: UserId,
    pub created_at: Timestamp,
    /// Sequence number of the newest message (0 when empty).
    pub last_seq: Seq,
    /// The caller's roles here: "member", "manager", "presenter".
    pub my_roles: Vec<String>,
    /// Whether the caller may read the room's history.
    pub can_read: bool,
    /// Whether the caller may post.
    pub can_post: bool,
    /// Role lists (user names); present on `GET /rooms/{id}` and on changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub members: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub managers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub presenters: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomsResponse {
    pub rooms: Vec<RoomView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessageRequest {
    pub body: String,
    pub client_msg_id: String,
    #[serde(default)]
    pub alert: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub room: RoomId,
    pub seq: Seq,
    /// The sender's user name.
    pub sender: String,
    pub sender_id: UserId,
    pub body: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub ts: Timestamp,
    pub client_msg_id: String,
    pub alert: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagesResponse {
    pub messages: Vec<MessageView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHitView {
    /// Pass as `before` to get the hits older than this one.
    pub cursor: String,
    #[serde(flatten)]
    pub message: MessageView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    pub hits: Vec<SearchHitView>,
    /// Cursor for the next (older) page, when this page was full.
    pub next_before: Option<String>,
}

/// Frames a client sends on `/api/v1/stream`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Room id (as a string) → the last `seq` the client has seen (0: none).
    Subscribe {
        rooms: BTreeMap<String, Seq>,
    },
    Unsubscribe {
        rooms: Vec<RoomId>,
    },
    Post {
        room: RoomId,
        body: String,
        client_msg_id: String,
        #[serde(default)]
        alert: bool,
    },
    Ping,
}

/// Frames the server sends on `/api/v1/stream`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Message(MessageView),
    /// A post is durable. `created` is false for a retry of an earlier post.
    Ack {
        client_msg_id: String,
        room: RoomId,
        seq: Seq,
        created: bool,
    },
    /// The subscription to these rooms is live; values are the room's last
    /// `seq` when the catch-up ended.
    Subscribed {
        rooms: BTreeMap<String, Seq>,
    },
    Unsubscribed {
        room: RoomId,
        reason: String,
    },
    /// A frame was refused. `client_msg_id` names the post when it was one.
    Error {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_msg_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        room: Option<RoomId>,
        code: String,
        message: String,
    },
    Pong,
    /// The server is shutting down; reconnect (to it or another active
    /// server) and resume from your cursors.
    GoingAway {
        reason: String,
    },
}
