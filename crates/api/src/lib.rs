//! pchat's wire shapes: HTTP request and response bodies, WebSocket frames,
//! and the one table of error codes (code, HTTP status, hint).
//!
//! Both the chat server and its clients (the CLI, the bench tool, tests) use
//! these types, so the two sides cannot drift apart. Every error answer is
//! `{"error": {"code": "...", "message": "..."}}` with a code from [`ErrorCode`].
//!
//! This crate holds data only: no IO, no HTTP framework.

use pchat_domain::{
    Category, CategoryId, GroupId, Invitations, ListChange, Privacy, RoomId, RoomType, Seq,
    Timestamp, User, UserId,
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

/// Lists not given start as: allowed `["*"]`, denied `[]`, creators `["*"]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCategoryRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub file_upload: Option<bool>,
    #[serde(default)]
    pub invitations: Option<bool>,
    #[serde(default)]
    pub chat_history: Option<bool>,
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
    #[serde(default)]
    pub denied: Option<Vec<String>>,
    #[serde(default)]
    pub creators: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchCategoryRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub file_upload: Option<bool>,
    #[serde(default)]
    pub invitations: Option<bool>,
    #[serde(default)]
    pub chat_history: Option<bool>,
    #[serde(default)]
    pub allowed: Option<ListChange>,
    #[serde(default)]
    pub denied: Option<ListChange>,
    #[serde(default)]
    pub creators: Option<ListChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryView {
    pub id: CategoryId,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
    pub file_upload: bool,
    pub invitations: bool,
    pub chat_history: bool,
    /// The lists (`alice`, `group:Sales`, `*`): shown to administrators.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allowed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub denied: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub creators: Option<Vec<String>>,
}

impl From<Category> for CategoryView {
    fn from(c: Category) -> Self {
        CategoryView {
            id: c.id,
            name: c.name,
            description: c.description,
            created_at: c.created_at,
            file_upload: c.file_upload,
            invitations: c.invitations,
            chat_history: c.chat_history,
            allowed: None,
            denied: None,
            creators: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoriesResponse {
    pub categories: Vec<CategoryView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Users (`alice`) and groups (`group:Sales`).
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchGroupRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub members: Option<ListChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub id: GroupId,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
    /// Direct members: users (`alice`) and groups (`group:Sales`).
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupsResponse {
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAddInRequest {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddInView {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddInsResponse {
    pub addins: Vec<AddInView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The invitee's user name.
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationView {
    pub room: RoomView,
    /// Who invited (absent: an operator).
    pub by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationsResponse {
    pub invitations: Vec<InvitationView>,
}

/// One user a room's lists reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibleView {
    pub name: String,
    /// Effective roles, through groups included.
    pub roles: Vec<String>,
    /// False: the category does not let them in (not allowed, or denied).
    pub allowed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EligibleResponse {
    pub users: Vec<EligibleView>,
}

/// Administrators take messages out of history. Every given field must
/// match; `room` or `user` is required. Without `remove`, each message's body
/// becomes `replacement` (default "This message was replaced by the
/// administrator").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveMessagesRequest {
    #[serde(default)]
    pub room: Option<RoomId>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    #[serde(default)]
    pub since: Option<Timestamp>,
    #[serde(default)]
    pub until: Option<Timestamp>,
    #[serde(default)]
    pub remove: bool,
    #[serde(default)]
    pub replacement: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveMessagesResponse {
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearRoomRequest {
    /// Milliseconds since the epoch: every message posted at or before goes.
    pub until: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersResponse {
    pub users: Vec<UserView>,
}

/// One compliance record of `mgccomp`, with its id there (ids grow with
/// every record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceRecordView {
    pub id: i64,
    #[serde(flatten)]
    pub record: pchat_domain::compliance::ComplianceRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComplianceRecordsResponse {
    pub records: Vec<ComplianceRecordView>,
    /// Pass as `after` for the next page (absent: this page was the last).
    pub next_after: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveMarkRequest {
    pub from: i64,
    pub through: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkResponse {
    pub job: String,
    /// The last record id the job has exported.
    pub through: i64,
}

/// `Some(None)` for an explicit JSON `null` (clear), `None` when absent.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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
    #[serde(default)]
    pub invitations: Option<Invitations>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// An add-in's name.
    #[serde(default)]
    pub addin: Option<String>,
    #[serde(default)]
    pub members: Option<Vec<String>>,
    #[serde(default)]
    pub managers: Option<Vec<String>>,
    #[serde(default)]
    pub presenters: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRoomRequest {
    /// Administrators only: move the room (entries the new category does not
    /// allow are dropped).
    #[serde(default)]
    pub category: Option<CategoryRef>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub invitations: Option<Invitations>,
    /// An add-in's name, or `null` to remove the room's add-in.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub addin: Option<Option<String>>,
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
    /// The room's setting: `inherit` (the category's) or `false`.
    pub invitations: Invitations,
    /// Whether the room sends invitations (its setting and its category's).
    pub invitations_on: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub addin: Option<AddInView>,
    pub created_by: UserId,
    pub created_at: Timestamp,
    /// Sequence number of the newest message (0 when empty).
    pub last_seq: Seq,
    /// The caller's roles here: "member", "manager", "presenter" (through
    /// groups included).
    pub my_roles: Vec<String>,
    /// Whether the caller may read the room's history.
    pub can_read: bool,
    /// Whether the caller may post.
    pub can_post: bool,
    /// Whether the caller may edit the room.
    pub can_manage: bool,
    /// Whether the caller may join (an Open room, or an invitation).
    pub can_join: bool,
    /// The caller holds an invitation to the room.
    pub invited: bool,
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
    /// An administrator replaced the body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    /// The file this message posts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    pub name: String,
    pub size: i64,
    pub content_type: String,
    pub sha256: String,
    /// Where members download it: `/api/v1/rooms/{room}/files/{sha256}`.
    pub url: String,
}

/// A topic feed: new messages with every word (whole words, ignoring case),
/// from any of the senders (if given), in any of the rooms (if given).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveFeedRequest {
    pub name: String,
    #[serde(default)]
    pub words: Vec<String>,
    /// Sender user names.
    #[serde(default)]
    pub senders: Vec<String>,
    #[serde(default)]
    pub rooms: Vec<RoomId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedView {
    pub id: i64,
    pub name: String,
    pub words: Vec<String>,
    pub senders: Vec<String>,
    pub rooms: Vec<RoomId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedsResponse {
    pub feeds: Vec<FeedView>,
}

/// The pool's settings. `default_chat_history` null: each server's own default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationView {
    pub default_chat_history: Option<u32>,
    pub max_file_size_kb: u32,
    pub participant_update_limit: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConfigurationRequest {
    /// 1 to 500, or null for each server's own default.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_chat_history: Option<Option<u32>>,
    #[serde(default)]
    pub max_file_size_kb: Option<u32>,
    #[serde(default)]
    pub participant_update_limit: Option<u32>,
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
    /// Deliver new messages matching the user's topic feeds (until the
    /// connection ends); feeds saved later are followed too.
    FollowFeeds,
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
    /// An administrator removed these messages (`removed`) or replaced their
    /// body with `body`.
    MessagesChanged {
        room: RoomId,
        seqs: Vec<Seq>,
        removed: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        body: Option<String>,
    },
    /// The connection now follows these feeds (names).
    FeedsFollowed {
        feeds: Vec<String>,
    },
    /// A new message matching one of the user's feeds.
    FeedMessage {
        feed: String,
        message: MessageView,
    },
    /// An administrator removed every message posted up to `until` (ms).
    RoomCleared {
        room: RoomId,
        until: Timestamp,
    },
    /// The room's history ends before the client's cursor: after a
    /// data-center failover, the messages it saw after `last_seq` were not
    /// shipped and are not in this history (`fork_id` names the database's
    /// new history). Delivery goes on from `last_seq`; a client re-sends its
    /// own lost posts with their `client_msg_id`.
    HistoryRewound {
        room: RoomId,
        your_seq: Seq,
        last_seq: Seq,
        fork_id: String,
    },
    /// The server is shutting down or no longer active in the pool;
    /// reconnect (to it or one of `active_servers`) and resume from your
    /// cursors, re-sending unacknowledged posts with their `client_msg_id`.
    GoingAway {
        reason: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        active_servers: Vec<ActiveServerView>,
    },
}

/// `GET /api/v1/pool`: whether this chat server serves, and where the
/// active servers are. Answered by every chat server, active or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolView {
    pub pool: String,
    pub server: String,
    pub data_center: String,
    /// Whether this server takes clients and writes now.
    pub serving: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The pool configuration version this server follows (0: a server
    /// outside any pool topology, which always serves).
    pub version: u64,
    /// `normal` or `failed-over`.
    pub state: String,
    pub active_servers: Vec<ActiveServerView>,
    /// Every chat server of the pool (from the topology), active or not: where
    /// a client that lost every active server it knew asks next.
    #[serde(default)]
    pub servers: Vec<ActiveServerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveServerView {
    pub name: String,
    pub data_center: String,
    /// Base URL for clients, e.g. `http://10.0.1.11:8080`.
    pub url: String,
}
