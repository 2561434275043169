//! The chat model's value types.

use serde::{Deserialize, Serialize};

pub type UserId = i64;
pub type RoomId = i64;
pub type CategoryId = i64;
pub type GroupId = i64;
pub type AddInId = i64;
/// Per-room message sequence number: starts at 1, no gaps.
pub type Seq = i64;
/// Log sequence number of a database's transaction log: starts at 1, no gaps.
pub type Lsn = i64;
/// Milliseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// Largest message body, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest user, room or category name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// Longest client message id, in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Privacy {
    /// Anyone finds, reads and (in a Normal room) posts.
    Open,
    /// Anyone finds; only members read and post.
    #[default]
    Closed,
    /// Only members find or read; to anyone else the room does not exist.
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RoomType {
    /// Members post.
    #[default]
    Normal,
    /// Only presenters post.
    Auditorium,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Manager,
    Presenter,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Member, Role::Manager, Role::Presenter];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Manager => "manager",
            Role::Presenter => "presenter",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl Privacy {
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Open => "open",
            Privacy::Closed => "closed",
            Privacy::Secret => "secret",
        }
    }
    pub fn parse(s: &str) -> Option<Privacy> {
        [Privacy::Open, Privacy::Closed, Privacy::Secret]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

impl RoomType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomType::Normal => "normal",
            RoomType::Auditorium => "auditorium",
        }
    }
    pub fn parse(s: &str) -> Option<RoomType> {
        [RoomType::Normal, RoomType::Auditorium]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub admin: bool,
    pub created_at: Timestamp,
}

/// Whom a room's role list or a category's list names: a user, a group (and
/// so, at check time, everyone in it and in the groups nested in it), or
/// everyone in the organisation (Lync's SIP domain or OU entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Principal {
    Everyone,
    User(UserId),
    Group(GroupId),
}

impl Principal {
    /// The one integer a principal is stored as: users above zero, groups
    /// below, everyone zero. Ids start at 1, so the forms never collide.
    pub fn key(self) -> i64 {
        match self {
            Principal::Everyone => 0,
            Principal::User(u) => u,
            Principal::Group(g) => -g,
        }
    }
    pub fn from_key(k: i64) -> Principal {
        match k {
            0 => Principal::Everyone,
            k if k > 0 => Principal::User(k),
            k => Principal::Group(-k),
        }
    }
}

/// How principals are written in lists: `alice`, `group:Sales`, `*`.
pub const GROUP_PREFIX: &str = "group:";
pub const EVERYONE: &str = "*";

/// A named set of users and of other groups, managed by administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
    /// Members may upload files to its rooms.
    pub file_upload: bool,
    /// Its rooms may send invitations (a room may still turn them off).
    pub invitations: bool,
    /// Messages are kept in history. Off: delivered live, recorded for
    /// compliance, never readable later.
    pub chat_history: bool,
}

/// The three principal lists of a category. Denied wins over allowed (an
/// ethical wall); only creators (and administrators) create rooms in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CategoryList {
    Allowed,
    Denied,
    Creators,
}

impl CategoryList {
    pub const ALL: [CategoryList; 3] = [
        CategoryList::Allowed,
        CategoryList::Denied,
        CategoryList::Creators,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CategoryList::Allowed => "allowed",
            CategoryList::Denied => "denied",
            CategoryList::Creators => "creators",
        }
    }
    pub fn parse(s: &str) -> Option<CategoryList> {
        CategoryList::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// A room's invitation setting (Lync: Inherit or False).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Invitations {
    /// As the category says.
    #[default]
    Inherit,
    /// Never.
    False,
}

impl Invitations {
    pub fn as_str(self) -> &'static str {
        match self {
            Invitations::Inherit => "inherit",
            Invitations::False => "false",
        }
    }
    pub fn parse(s: &str) -> Option<Invitations> {
        [Invitations::Inherit, Invitations::False]
            .into_iter()
            .find(|i| i.as_str() == s)
    }
}

/// A named web page shown with the rooms that use it (Lync's add-ins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddIn {
    pub id: AddInId,
    pub name: String,
    pub url: String,
}

/// Longest add-in URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// An http or https URL with a host and no spaces or control characters.
pub fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            url.len() <= MAX_URL_BYTES
                && !rest.is_empty()
                && !rest.starts_with('/')
                && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// A room's properties, without its role lists (which may be long).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: RoomId,
    pub name: String,
    pub category: CategoryId,
    pub description: String,
    pub privacy: Privacy,
    #[serde(rename = "type")]
    pub room_type: RoomType,
    pub created_by: UserId,
    pub created_at: Timestamp,
    /// Sequence number of the room's newest message (0 when empty).
    pub last_seq: Seq,
    pub disabled: bool,
    pub invitations: Invitations,
    pub addin: Option<AddInId>,
}

/// One user's standing in one room: their roles (directly or through a
/// group), whether the room's category lets them in, and whether they hold an
/// invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Access {
    pub member: bool,
    pub manager: bool,
    pub presenter: bool,
    /// The category allows them and does not deny them (see [`category_permits`]).
    pub allowed: bool,
    pub invited: bool,
}

/// The category rule, in one place: a principal is let in when the allowed
/// list names it (or a group it is in, or everyone) and the denied list names
/// none of these. Denied wins: that is the ethical wall.
pub fn category_permits(named_in_allowed: bool, named_in_denied: bool) -> bool {
    named_in_allowed && !named_in_denied
}

impl Access {
    pub fn has(&self, role: Role) -> bool {
        match role {
            Role::Member => self.member,
            Role::Manager => self.manager,
            Role::Presenter => self.presenter,
        }
    }
    pub fn any(&self) -> bool {
        self.member || self.manager || self.presenter
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub room: RoomId,
    pub seq: Seq,
    pub sender: UserId,
    pub ts: Timestamp,
    pub body: String,
    pub alert: bool,
    pub client_msg_id: String,
    /// An administrator replaced the body.
    #[serde(default)]
    pub replaced: bool,
    /// The file this message posts (an upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// A file posted in a room: its content is stored once, named by its
/// SHA-256, next to the databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: i64,
    /// The name it was uploaded with.
    pub name: String,
    pub content_type: String,
}

/// A SHA-256 as files are named by it: 64 lowercase hex digits.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileRef {
    pub fn valid(&self) -> bool {
        valid_sha256(&self.sha256)
            && self.size >= 0
            && valid_name(&self.name)
            && !self.name.contains(['/', '\\'])
            && self.content_type.len() <= 128
            && !self.content_type.chars().any(|c| c.is_control())
    }
}

pub type FeedId = i64;

/// A topic feed: a user's saved filter. A new message matches when it has
/// every word (as a whole word, ignoring case), comes from one of the
/// senders (if any are given) and is in one of the rooms (if any are given);
/// it is delivered only if the user may read its room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub id: FeedId,
    pub user: UserId,
    pub name: String,
    pub words: Vec<String>,
    pub senders: Vec<UserId>,
    pub rooms: Vec<RoomId>,
    pub created_at: Timestamp,
}

/// Most feeds per user, and most words, senders and rooms in one feed.
pub const MAX_FEEDS: usize = 20;
pub const MAX_FEED_ITEMS: usize = 50;

/// The words of a text as the feeds (and full-text search) see them:
/// runs of letters and digits, lowercased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

impl Feed {
    /// Whether the message matches; `body_words` is `words(&m.body)`,
    /// computed once per message by the caller however many feeds it checks.
    pub fn matches(&self, m: &Message, body_words: &std::collections::HashSet<String>) -> bool {
        (self.rooms.is_empty() || self.rooms.contains(&m.room))
            && (self.senders.is_empty() || self.senders.contains(&m.sender))
            && self.words.iter().all(|w| body_words.contains(w))
    }
}

/// The pool's settings (Lync's Set-CsPersistentChatConfiguration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    /// Messages a client gets on join when it asks for no number (1–500).
    /// None: each chat server's own default.
    pub default_chat_history: Option<u32>,
    /// Largest file upload, in KB (1,000 bytes).
    pub max_file_size_kb: u32,
    /// Rooms with more participants than this get no live participant-list
    /// updates (clients fetch the list instead).
    pub participant_update_limit: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            default_chat_history: None,
            max_file_size_kb: 20_000,
            participant_update_limit: 75,
        }
    }
}

/// Largest MaxFileSizeKB an administrator may set (1 GB).
pub const MAX_FILE_SIZE_KB_LIMIT: u32 = 1_000_000;

/// The body of a message an administrator replaced without giving a text.
pub const REPLACED_TEXT: &str = "This message was replaced by the administrator";

/// Checks a user, room or category name.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    n > 0 && n <= MAX_NAME_CHARS && name.trim() == name && !name.chars().any(|c| c.is_control())
}

/// Names are unique without regard to case; this is the form they are compared in.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}
