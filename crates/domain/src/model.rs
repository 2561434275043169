//! The chat model's value types.

use serde::{Deserialize, Serialize};

pub type UserId = i64;
pub type RoomId = i64;
pub type CategoryId = i64;
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
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
}

/// One user's roles in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Access {
    pub member: bool,
    pub manager: bool,
    pub presenter: bool,
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
}

/// Checks a user, room or category name.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    n > 0 && n <= MAX_NAME_CHARS && name.trim() == name && !name.chars().any(|c| c.is_control())
}

/// Names are unique without regard to case; this is the form they are compared in.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}
