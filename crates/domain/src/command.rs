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

/// Changes to one principal list (a room's role list, a category's list, a
/// group's members): `replace` (when given) sets the list, then `add` and
/// `remove` apply. Entries are written `alice` (a user), `group:Sales` (a
/// group) or `*` (everyone; category lists only).
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
    /// Sets the list to exactly these entries (no change when `None`).
    pub fn set(list: Option<Vec<String>>) -> ListChange {
        ListChange {
            replace: list,
            ..ListChange::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.replace.is_none()
    }
}

/// A room's properties to set. On creation `name` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub privacy: Option<Privacy>,
    pub room_type: Option<RoomType>,
    /// Move to another category (administrators only).
    pub category: Option<CategoryId>,
    pub disabled: Option<bool>,
    pub invitations: Option<Invitations>,
    /// `Some(None)` removes the room's add-in; `Some(Some(name))` sets it.
    pub addin: Option<Option<String>>,
    pub members: ListChange,
    pub managers: ListChange,
    pub presenters: ListChange,
}

/// A category's properties to set. On creation `name` is required, and lists
/// not given start as: allowed `*`, denied empty, creators `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub file_upload: Option<bool>,
    pub invitations: Option<bool>,
    pub chat_history: Option<bool>,
    pub allowed: ListChange,
    pub denied: ListChange,
    pub creators: ListChange,
}

impl CategoryChanges {
    pub fn list(&self, list: CategoryList) -> &ListChange {
        match list {
            CategoryList::Allowed => &self.allowed,
            CategoryList::Denied => &self.denied,
            CategoryList::Creators => &self.creators,
        }
    }
}

/// A group's properties to set. On creation `name` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub members: ListChange,
}

/// Which messages an administrator removes or replaces. Every given field
/// must match; at least one of `room` and `user` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFilter {
    pub room: Option<RoomId>,
    /// Sender, by name.
    pub user: Option<String>,
    /// The body contains this text (ignoring case).
    pub text: Option<String>,
    /// Posted at or after (ms since the epoch).
    pub since: Option<Timestamp>,
    /// Posted at or before (ms since the epoch).
    pub until: Option<Timestamp>,
}

/// Changes to the pool's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChanges {
    /// `Some(None)` returns to each server's own default.
    pub default_chat_history: Option<Option<u32>>,
    pub max_file_size_kb: Option<u32>,
    pub participant_update_limit: Option<u32>,
}

/// One message of an `import-data` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedMessage {
    pub seq: Seq,
    /// Sender, by name.
    pub sender: String,
    pub ts: Timestamp,
    pub body: String,
    #[serde(default)]
    pub alert: bool,
    pub client_msg_id: String,
    #[serde(default)]
    pub replaced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// A read that compliance records (Lync's BACKCHAT and FILEDOWNLOAD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// The user read the room's history.
    History,
    /// The user downloaded a file posted in the room.
    FileDownload { file: String },
}

/// What happens to a message an administrator takes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChange {
    /// Gone from history and search (compliance keeps it).
    Removed,
    /// The body becomes this text, marked as replaced.
    Replaced(String),
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
    CreateGroup {
        actor: Actor,
        group: Box<GroupChanges>,
    },
    UpdateGroup {
        actor: Actor,
        group: GroupId,
        changes: Box<GroupChanges>,
    },
    /// Removes the group and every list entry that names it.
    DeleteGroup {
        actor: Actor,
        group: GroupId,
    },
    CreateCategory {
        actor: Actor,
        category: Box<CategoryChanges>,
    },
    UpdateCategory {
        actor: Actor,
        category: CategoryId,
        changes: Box<CategoryChanges>,
    },
    /// Refused while the category has rooms.
    DeleteCategory {
        actor: Actor,
        category: CategoryId,
    },
    CreateRoom {
        actor: Actor,
        category: CategoryId,
        room: Box<RoomChanges>,
    },
    UpdateRoom {
        actor: Actor,
        room: RoomId,
        changes: Box<RoomChanges>,
    },
    /// Administrators only. History goes with the room; compliance keeps it.
    DeleteRoom {
        actor: Actor,
        room: RoomId,
    },
    /// A manager invites a user (by name) to a room.
    Invite {
        actor: Actor,
        room: RoomId,
        user: String,
    },
    /// Become a member: of an Open room, or of a room one is invited to.
    JoinRoom {
        actor: UserId,
        room: RoomId,
    },
    /// Stop being a (direct) member, or decline an invitation.
    LeaveRoom {
        actor: UserId,
        room: RoomId,
    },
    CreateAddIn {
        actor: Actor,
        name: String,
        url: String,
    },
    /// Rooms that used the add-in lose it.
    DeleteAddIn {
        actor: Actor,
        name: String,
    },
    /// Administrators only (authors cannot delete their own messages).
    ChangeMessages {
        actor: Actor,
        filter: MessageFilter,
        change: MessageChange,
    },
    /// Posts a message carrying a file the chat server has stored.
    PostFile {
        actor: UserId,
        room: RoomId,
        file: FileRef,
        /// Text shown with the file (default: its name).
        body: Option<String>,
        client_msg_id: String,
    },
    /// Puts history into a room as it was elsewhere (`import-data`): each
    /// message keeps its sequence number, sender, time and flags. The
    /// operator at the machine only.
    ImportMessages {
        actor: Actor,
        room: RoomId,
        messages: Vec<ImportedMessage>,
    },
    /// Saves (or replaces, by name) one of the user's topic feeds.
    SaveFeed {
        actor: UserId,
        name: String,
        words: Vec<String>,
        /// Sender names.
        senders: Vec<String>,
        rooms: Vec<RoomId>,
    },
    DeleteFeed {
        actor: UserId,
        feed: FeedId,
    },
    SetConfiguration {
        actor: Actor,
        changes: ConfigChanges,
    },
    /// Records, for compliance, that a user read something (the chat server
    /// has checked they may).
    RecordAccess {
        user: UserId,
        room: RoomId,
        access: AccessKind,
    },
    /// Administrators only: removes every message posted up to `until`.
    ClearRoom {
        actor: Actor,
        room: RoomId,
        until: Timestamp,
    },
    PostMessage {
        actor: UserId,
        room: RoomId,
        body: String,
        client_msg_id: String,
        alert: bool,
    },
}

impl Command {
    /// A category with default settings and lists.
    pub fn new_category(actor: Actor, name: &str) -> Command {
        Command::CreateCategory {
            actor,
            category: Box::new(CategoryChanges {
                name: Some(name.into()),
                ..CategoryChanges::default()
            }),
        }
    }

    /// A Normal room with the given privacy and default settings.
    pub fn new_room(actor: Actor, category: CategoryId, name: &str, privacy: Privacy) -> Command {
        Command::CreateRoom {
            actor,
            category,
            room: Box::new(RoomChanges {
                name: Some(name.into()),
                privacy: Some(privacy),
                ..RoomChanges::default()
            }),
        }
    }
}

/// A command with the name of the chat server that sent it; the name is kept
/// in the log and in compliance records ("which server").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub origin: String,
    pub command: Command,
}
